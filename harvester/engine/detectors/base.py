"""The contract every detector implements.

A *rule detector* is built once per rule and kind and sees that rule's matched posts, already scored;
a *stream detector* is built once and sees every post. Both are pure: time is the `ts` passed in
(event time in a replay, the wall clock live), nothing is read from a clock and nothing does I/O.
`advance(ts)` lets time pass without a post, so detectors of silence and of windows closing can fire.
`snapshot()` / `restore()` keep a detector's learned state across restarts; evidence details (authors,
example posts) need not survive.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from harvester.engine.normalize import terms as content_terms
from harvester.engine.simhash import simhash
from harvester.engine.simhash import words as text_words
from harvester.models import Post, Signal

if TYPE_CHECKING:
    from harvester.engine.detectors.near_duplicates import NearDuplicates

# Every detector waits at least this long after a signal before the next one of its kind and rule,
# whatever its own settings say: a flood of identical alerts is how users learn to ignore a tool.
MIN_COOLDOWN_S = 30.0


class Throttle:
    """Judge a busy window at most every `every` posts or `seconds` of time, whichever comes first.

    Detectors that judge several suffixes of their window after a post would spend most of a busy
    rule's time re-judging a window one post different from the last; a quiet rule (fewer than
    `every` posts a second) is still judged on every post, and a busy one within a second.
    """

    __slots__ = ("every", "pending", "seconds", "until")

    def __init__(self, every: int = 8, seconds: float = 1.0) -> None:
        self.every = every
        self.seconds = seconds
        self.pending = 0
        self.until = -math.inf

    def due(self, ts: float, posts: int = 1) -> bool:
        self.pending += posts
        if self.pending < self.every and ts < self.until:
            return False
        self.pending = 0
        self.until = ts + self.seconds
        return True


@lru_cache(maxsize=256)
def shared_vocabulary(vocabulary: frozenset[str]) -> frozenset[str]:
    """One instance per distinct vocabulary, so that `Observation.found` can cache by identity the
    words every rule with the same (default) crisis terms asks for."""
    return vocabulary


class Observation:
    """One matched post as a rule detector sees it, shared by every rule the post matched.

    What costs more than a detector's whole update is worked out once, on first use, and kept here
    for the other rules: `terms` (the content terms, see `harvester.engine.normalize.terms`; only
    needed when a signal fires), `words` (plain lower-case words, for fingerprints and for `found`,
    the words of a fixed vocabulary such as the crisis terms), and the post's near-duplicate cluster,
    which the engine sets before the rule detectors run.
    """

    __slots__ = (
        "_fingerprint",
        "_found",
        "_terms",
        "_vocabulary",
        "_words",
        "cluster",
        "engagement",
        "post",
        "sentiment",
        "ts",
    )

    def __init__(self, ts: float, post: Post, sentiment: float | None, terms: tuple[str, ...] | None = None):
        self.ts = ts  # engine time, epoch seconds
        self.post = post
        self.sentiment = sentiment  # VADER compound, -1..1
        self.engagement = post.engagement  # read by several detectors of every rule the post matched
        self._terms = terms
        self._words: list[str] | None = None
        self._fingerprint: int | None = None
        self._vocabulary: frozenset[str] | None = None
        self._found: tuple[str, ...] = ()
        self.cluster: NearDuplicates | None = None

    @property
    def terms(self) -> tuple[str, ...]:
        if self._terms is None:
            self._terms = tuple(content_terms(self.post.text))
        return self._terms

    @property
    def term_source(self) -> str | tuple[str, ...]:
        """What the post's terms come from, for evidence kept for minutes: its terms if they are
        known already (given, or worked out for a signal), else its text."""
        return self._terms if self._terms is not None else self.post.text

    @property
    def words(self) -> list[str]:
        """The post's lower-case words (`harvester.engine.simhash.words`): cheaper than its terms,
        and what near-duplicate fingerprints are made of."""
        if self._words is None:
            self._words = text_words(self.post.text)
        return self._words

    @property
    def fingerprint(self) -> int:
        """The SimHash of `words` (see `harvester.engine.simhash`)."""
        if self._fingerprint is None:
            self._fingerprint = simhash(self.words)
        return self._fingerprint

    def known(self, words: list[str], fingerprint: int) -> None:
        """Take the words and fingerprint worked out elsewhere (the sentiment worker)."""
        self._words = words
        self._fingerprint = fingerprint

    def release(self) -> None:
        """Drop what only this post's pass through the rules needed. Detectors keep some
        observations as evidence (a bounded sample per bucket) for minutes; a word list and a
        reference to a cluster (which holds other posts) would stay alive with each."""
        self._words = None
        self.cluster = None

    def found(self, vocabulary: frozenset[str]) -> tuple[str, ...]:
        """The words of `vocabulary` the post contains, each once (crisis terms, say). The last
        answer is kept for the next rule asking with the same (`shared_vocabulary`) instance."""
        if vocabulary is self._vocabulary:
            return self._found
        if self._terms is not None:  # given its terms (a test, a tool): those are the post's words
            hits = tuple(term for term in self._terms if term in vocabulary)
        else:
            hits = tuple(vocabulary.intersection(self.words))
        self._vocabulary, self._found = vocabulary, hits
        return hits


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# How the engine encodes its snapshot (compact JSON); a detector that writes its own part of it
# (`snapshot_json`) encodes with the same, so the text is what encoding its `snapshot()` gives.
encode_json = json.JSONEncoder(separators=(",", ":")).encode


def finite(value: float) -> float | None:
    """`value`, or None for an infinite one (JSON, and so a snapshot, has no infinity)."""
    return value if math.isfinite(value) else None


class RuleDetector(ABC):
    kind: ClassVar[str]
    # A detector that only folds posts into time buckets and judges the window says so here: the
    # engine then hands it a rule's posts a few at a time (`observe_many`, a little later: see
    # `BATCH_SECONDS` in `harvester.engine.engine`), and it pays its per-call costs (finding the
    # bucket, judging the window) once per batch instead of once per post.
    batched: ClassVar[bool] = False

    def __init__(self, rule: str) -> None:
        self.rule = rule

    @abstractmethod
    def observe(self, obs: Observation) -> list[Signal]:
        """A matched post arrived."""

    def observe_many(self, batch: Sequence[Observation]) -> list[Signal]:
        """Several matched posts of this rule, oldest first (engine time never goes back in a batch).
        Detectors with `batched` override this with a cheaper equivalent."""
        signals: list[Signal] = []
        for obs in batch:
            signals += self.observe(obs)
        return signals

    def advance(self, ts: float) -> list[Signal]:
        """Time moved to `ts` with no post for this rule."""
        return []

    def reobserve(self, ts: float, post: Post) -> list[Signal]:
        """A post already seen arrived again, maybe with new engagement counts (a re-fetch, an
        updated repost). Only detectors that follow posts over time care."""
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what `snapshot` saved (after a restart, the downtime is unknown traffic)."""


class StreamDetector(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def observe(self, ts: float, post: Post, rules: tuple[str, ...]) -> list[Signal]:
        """Any post arrived; `rules` are the rules it matched (maybe none)."""

    def advance(self, ts: float) -> list[Signal]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what `snapshot` saved."""
