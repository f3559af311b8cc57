"""The engine: rules -> sentiment -> detectors. Pure logic; the caller passes the time in.

`now` is epoch seconds: the wall clock for live sources, the posts' own `created_at` in a replay
(event time). Nothing here does I/O, so tests drive time by passing it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from harvester.config.schema import EngineConfig, RuleConfig
from harvester.engine.rules import CompiledRule, RuleMatcher
from harvester.engine.sentiment import SentimentScorer
from harvester.engine.volume import VolumeSpikeDetector
from harvester.models import Post, Signal

SNAPSHOT_VERSION = 1


class Verdict(NamedTuple):
    """What the engine made of one post (a NamedTuple: built once per post, on the hot path)."""

    rules: tuple[str, ...]
    sentiment: float | None
    signals: tuple[Signal, ...]


_NO_MATCH = Verdict((), None, ())


class Engine:
    def __init__(
        self, rules: Sequence[RuleConfig], config: EngineConfig, scorer: SentimentScorer | None = None
    ) -> None:
        self.config = config
        self.scorer = scorer or SentimentScorer()
        self.detectors: dict[str, VolumeSpikeDetector] = {}
        self.load_rules(rules)

    def load_rules(self, rules: Sequence[RuleConfig]) -> None:
        """(Re)build the matcher; detectors of rules whose settings did not change keep their state."""
        self.matcher = RuleMatcher(rules)
        kept: dict[str, VolumeSpikeDetector] = {}
        for rule in rules:
            spike = rule.volume_spike or self.config.volume_spike
            if not spike.enabled:
                continue
            previous = self.detectors.get(rule.name)
            if previous is not None and previous.config == spike:
                kept[rule.name] = previous
            else:
                kept[rule.name] = VolumeSpikeDetector(rule.name, spike, self.config.example_posts)
        self.detectors = kept

    def match(self, post: Post) -> list[CompiledRule]:
        """The rules `post` matches (step one; sentiment is then scored for matched posts only)."""
        return self.matcher.match(post)

    def observe(
        self, post: Post, matched: list[CompiledRule], sentiment: float | None, now: float
    ) -> Verdict:
        """Step two: feed a matched, scored post to its rules' detectors."""
        signals = []
        for rule in matched:
            detector = self.detectors.get(rule.name)
            if detector is not None:
                signal = detector.observe(now, post, sentiment)
                if signal is not None:
                    signals.append(signal)
        return Verdict(tuple(rule.name for rule in matched), sentiment, tuple(signals))

    def process(self, post: Post, now: float) -> Verdict:
        """Match, score and observe in one call (replays and tests; the daemon splits the steps)."""
        matched = self.matcher.match(post)
        if not matched:
            return _NO_MATCH
        return self.observe(post, matched, self.scorer.score(post.text), now)

    def tick(self, now: float) -> list[Signal]:
        """Let time pass with no posts: close buckets so quiet periods count as zeros."""
        for detector in self.detectors.values():
            detector.advance(now)
        return []

    def snapshot(self) -> str:
        state: dict[str, Any] = {
            "version": SNAPSHOT_VERSION,
            "volume_spike": {name: d.snapshot() for name, d in self.detectors.items()},
        }
        return json.dumps(state, separators=(",", ":"))

    def restore(self, blob: str) -> int:
        """Restore detector state for the rules that still exist; returns how many were restored."""
        state = json.loads(blob)
        if state.get("version") != SNAPSHOT_VERSION:
            return 0
        restored = 0
        for name, detector_state in state.get("volume_spike", {}).items():
            detector = self.detectors.get(name)
            if detector is not None:
                detector.restore(detector_state)
                restored += 1
        return restored
