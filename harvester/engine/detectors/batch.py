"""A rule's pending posts as its window detectors take them, folded once for all of them.

The volume, sentiment and crisis detectors of a rule are handed the same batch of posts (see
`BATCH_SECONDS` in `harvester.engine.engine`), and each used to walk it for the same figures: the
authors, how many posts were scored and their sentiment sum, the negative and positive posts. With
1,000 rules that was three passes per rule a post matched. A `Batch` is the list the engine gathers a
rule's posts in; `facts_of` walks it once, on first use, and keeps the figures for the other
detectors. A detector handed a plain sequence (a test, or a slice of a batch that spans two buckets)
gets the same figures, worked out for it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.evidence import Names

# VADER's own convention: a compound score within +/-0.05 is neutral.
NEUTRAL_BAND = 0.05


class Batch(list[Observation]):
    """The posts of one rule waiting for its batched detectors, oldest first."""

    __slots__ = ("facts",)

    def __init__(self) -> None:
        super().__init__()
        self.facts: BatchFacts | None = None


class BatchFacts:
    """What the window detectors read of every post of a batch, summed in one pass."""

    __slots__ = ("authors", "negative", "positive", "scored", "scored_authors", "squares", "total")

    def __init__(self, run: Sequence[Observation]) -> None:
        # One plain loop: for the few posts of a typical batch it costs a third of what a
        # comprehension per figure does (each comprehension is a function call).
        authors: list[str] = []
        scored_authors: list[str] = []
        negative: list[Observation] = []
        positive: list[Observation] = []
        scored, total, squares = 0, 0.0, 0.0
        for obs in run:
            author = obs.post.author
            authors.append(author)
            score = obs.sentiment
            if score is None:  # unscored: counted as a post, says nothing about sentiment
                continue
            scored += 1
            total += score
            squares += score * score
            scored_authors.append(author)
            if score <= -NEUTRAL_BAND:
                negative.append(obs)
            elif score >= NEUTRAL_BAND:
                positive.append(obs)
        self.authors = Names(authors)
        # Nearly always every post was scored: then both are one list, hashed once.
        self.scored_authors = self.authors if scored == len(authors) else Names(scored_authors)
        self.scored = scored
        self.total = total
        self.squares = squares
        self.negative = negative
        self.positive = positive


def facts_of(run: Sequence[Observation]) -> BatchFacts:
    """The figures of `run`: kept on a `Batch` for the next detector asking, worked out afresh for
    any other sequence."""
    if isinstance(run, Batch):
        facts = run.facts
        if facts is None:
            facts = run.facts = BatchFacts(run)
        return facts
    return BatchFacts(run)
