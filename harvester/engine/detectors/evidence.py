"""Evidence for signals, gathered at a cost the hot path can afford.

Every matched post of every rule passes through several detectors, so what they keep per post must
cost next to nothing. A `Tally` keeps the most engaged posts (a small heap) and a rolling sample of
the posts themselves; the content terms that explain a signal are worked out from that sample only
when a signal fires, never per post. A sample of a few dozen posts per bucket names the same top
terms as counting every post (the terms that matter are the ones many posts share) at a fraction of
the cost: tokenizing a post costs about half of what VADER does.

The distinct accounts behind a bucket are counted the same way, in bounded memory: a `DistinctCount`
keeps the smallest `DISTINCT_EXACT` hashes of the accounts it saw (a "k minimum values" sketch). Up to
that many accounts the count is exact; beyond, how densely the smallest hashes pack the hash range
says how many there were (within about 13% at 64), and the sketches of several buckets merge into the
count of their union. A set of the names themselves grew with every new account until a cap
(thousands per bucket), and a count that stopped at the cap understated exactly the big events.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harvester.engine.normalize import terms as content_terms

if TYPE_CHECKING:
    from harvester.engine.detectors.base import Observation

TOP_TERMS = 10
# Posts kept per tally for the top terms: the newest, so a bucket's sample leans to its latest
# posts, which is where an event that just started shows.
SAMPLE_SIZE = 24
DISTINCT_EXACT = 64  # accounts counted exactly per sketch; beyond, estimated (standard error ~13%)
_HASH_LOW = -(2**63)  # str hashes are signed 64-bit values, spread evenly over [-2**63, 2**63)
_HASH_SPAN = 2.0**64


class DistinctCount:
    """How many distinct strings (accounts) were added: exact up to `DISTINCT_EXACT`, estimated beyond
    from the smallest hashes seen; under a kilobyte whatever the traffic. (Python's str hash is
    SipHash, salted per process: fine for counts that live in memory only.)"""

    __slots__ = ("names", "saturated", "smallest")

    def __init__(self) -> None:
        # The accounts themselves while there are few (a set's update runs in C: most buckets of most
        # rules never see more), then the smallest of their hashes, ascending.
        self.names: set[str] | None = set()
        self.smallest = array("q")
        self.saturated = False  # whether some account's hash was left out (the count is then estimated)

    def add(self, value: str) -> None:
        self.add_names(Names([value]))

    def add_many(self, values: Iterable[str]) -> None:
        self.add_names(Names(list(values)))

    def add_names(self, batch: Names) -> None:
        names = self.names
        if names is not None:
            names.update(batch.names)
            if len(names) > DISTINCT_EXACT:
                self.smallest = array("q", sorted(map(hash, names))[:DISTINCT_EXACT])
                self.names, self.saturated = None, True
            return
        kept = self.smallest
        # Only a hash below the largest kept can enter, and for nearly every batch of a busy bucket
        # none is: the batch's smallest hash (worked out once for every sketch it goes into)
        # settles that.
        bound = kept[-1]
        if not batch.names or batch.least >= bound:
            return
        for value in filter(bound.__gt__, batch.hashes):
            # (Checked again: the bound is the largest kept when the batch began, and may have gone.)
            at = bisect_left(kept, value)
            if at < len(kept) and kept[at] != value:  # below the largest, and not seen before
                kept.pop()
                kept.insert(at, value)

    def hashes(self) -> Iterable[int]:
        return self.smallest if self.names is None else map(hash, self.names)

    def __len__(self) -> int:
        return len(self.names) if self.names is not None else _estimate(self.smallest, True)

    @staticmethod
    def union(counts: Iterable[DistinctCount]) -> int:
        """The distinct accounts over several sketches (buckets of one window)."""
        merged: set[int] = set()
        saturated = False
        for count in counts:
            merged.update(count.hashes())
            saturated = saturated or count.saturated
        smallest = sorted(merged)
        if len(smallest) > DISTINCT_EXACT:
            smallest, saturated = smallest[:DISTINCT_EXACT], True
        return _estimate(smallest, saturated)


class Names:
    """The account names of a batch, with their distinct hashes and the smallest of them worked out
    on first use: a rule's batch goes into the sketches of three window detectors."""

    __slots__ = ("_hashes", "_least", "names")

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._hashes: set[int] | None = None
        self._least: int | None = None

    @property
    def hashes(self) -> set[int]:
        if self._hashes is None:
            self._hashes = set(map(hash, self.names))
        return self._hashes

    @property
    def least(self) -> int:
        """The smallest hash (of a batch with at least one name)."""
        if self._least is None:
            self._least = min(self.hashes)
        return self._least


def _estimate(smallest: Sequence[int], saturated: bool) -> int:
    if not saturated:
        return len(smallest)
    # The k-th smallest of n evenly spread hashes sits near k/n of the range: n ~ (k - 1) / share.
    share = (smallest[-1] - _HASH_LOW + 1) / _HASH_SPAN
    return max(len(smallest), round((len(smallest) - 1) / share))


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
        sample.extend([obs.term_source for obs in batch[-SAMPLE_SIZE:]])  # older ones would go at once
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
