"""Evidence for signals, gathered at a cost the hot path can afford.

Every matched post of every rule passes through several detectors, so what they keep per post must
cost next to nothing. A `Tally` keeps the most engaged posts (a small heap) and a rolling sample of
the posts themselves; the content terms that explain a signal are worked out from that sample only
when a signal fires, never per post. A sample of a few dozen posts per bucket names the same top
terms as counting every post (the terms that matter are the ones many posts share) at a fraction of
the cost: tokenizing a post costs about half of what VADER does.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harvester.engine.normalize import terms as content_terms

if TYPE_CHECKING:
    from harvester.engine.detectors.base import Observation

TOP_TERMS = 10
# Posts kept per tally for the top terms: the newest, so a bucket's sample leans to its latest
# posts, which is where an event that just started shows.
SAMPLE_SIZE = 24


@dataclass(slots=True)
class Tally:
    """The most engaged posts and a bounded sample of posts, of one bucket (or one side of it)."""

    # (engagement, uid) min-heap: the root is the least engaged of the kept examples.
    examples: list[tuple[int, str]] = field(default_factory=list)
    # The newest SAMPLE_SIZE posts, oldest first, as what their terms are worked out from (see
    # `Observation.term_source`): a sample lives for the whole window, and a post kept whole would
    # keep every field of it alive that long.
    sample: list[str | tuple[str, ...]] = field(default_factory=list)
    seen: int = 0

    def add(self, obs: Observation, keep_examples: int) -> None:
        self.add_many((obs,), keep_examples)

    def add_many(self, batch: Sequence[Observation], keep_examples: int) -> None:
        """Count `batch` (oldest first) in: the sample keeps the newest posts, the heap the most engaged."""
        sample = self.sample
        sample.extend([obs.term_source for obs in batch])
        if len(sample) > SAMPLE_SIZE:
            del sample[: len(sample) - SAMPLE_SIZE]
        self.seen += len(batch)
        examples = self.examples
        for obs in batch:
            engagement = obs.engagement
            if len(examples) < keep_examples:
                heapq.heappush(examples, (engagement, obs.post.uid))
            elif engagement >= examples[0][0]:  # most posts stop here, before building a tuple
                item = (engagement, obs.post.uid)
                if item > examples[0]:
                    heapq.heapreplace(examples, item)


def top_terms(tallies: list[Tally], count: int = TOP_TERMS) -> list[list[Any]]:
    """The terms most posts of the tallies' samples share, as [term, posts] pairs (JSON-friendly)."""
    merged: Counter[str] = Counter()
    for tally in tallies:
        for source in tally.sample:
            merged.update(source if isinstance(source, tuple) else content_terms(source))
    best = heapq.nsmallest(count, merged.items(), key=lambda item: (-item[1], item[0]))
    return [[term, n] for term, n in best]


def top_examples(tallies: list[Tally], count: int) -> list[str]:
    """Uids of the most engaged posts over several tallies, highest engagement first."""
    return [uid for _, uid in heapq.nlargest(count, (e for t in tallies for e in t.examples))]
