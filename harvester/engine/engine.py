"""The engine: rules -> sentiment -> detectors. Pure logic; the caller passes the time in.

`now` is epoch seconds: the wall clock for live sources, the posts' own `created_at` in a replay
(event time). Nothing here does I/O, so tests drive time by passing it.

Each rule gets one detector of each enabled kind, built from the engine's defaults with the rule's
own overrides and sensitivity preset applied. Stream detectors (source silence, new cashtags) see
every post, matched or not. The crisis detector of a rule is told about the rule's other signals,
because a crisis is a spike, negative sentiment and crisis vocabulary at once.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel

from harvester.config.schema import EngineConfig, RuleConfig
from harvester.engine.detectors.base import Observation, RuleDetector, StreamDetector, encode_json
from harvester.engine.detectors.batch import Batch
from harvester.engine.detectors.campaign import CampaignDetector, index_for
from harvester.engine.detectors.cashtags import NewCashtagDetector
from harvester.engine.detectors.crisis import CrisisDetector
from harvester.engine.detectors.near_duplicates import NearDuplicateIndex
from harvester.engine.detectors.sentiment import SentimentShiftDetector
from harvester.engine.detectors.silence import SilenceDetector, SourceSilenceDetector
from harvester.engine.detectors.viral import ViralPostDetector
from harvester.engine.presets import resolve_settings
from harvester.engine.rules import CompiledRule, RuleMatcher
from harvester.engine.sentiment import SentimentScorer
from harvester.engine.sentiment_pool import TextFacts
from harvester.engine.volume import VolumeSpikeDetector
from harvester.models import Post, Signal

SNAPSHOT_VERSION = 2
DetectorFactory = Callable[[str, Any, "Engine"], RuleDetector]

# kind of settings (the key under `engine:` and in a rule) -> how to build its detector. The crisis
# detector comes after the detectors whose signals it combines (see `_with_composites`).
RULE_DETECTORS: dict[str, DetectorFactory] = {
    "volume_spike": lambda rule, settings, engine: VolumeSpikeDetector(
        rule, settings, engine.config.example_posts, engine.config.lateness
    ),
    "sentiment": lambda rule, settings, engine: SentimentShiftDetector(
        rule, settings, engine.config.example_posts
    ),
    "viral": lambda rule, settings, engine: ViralPostDetector(rule, settings, engine.config.example_posts),
    "campaign": lambda rule, settings, engine: CampaignDetector(
        rule, settings, engine.config.example_posts, engine.near_duplicates
    ),
    "crisis": lambda rule, settings, engine: CrisisDetector(rule, settings, engine.config.example_posts),
    "silence": lambda rule, settings, _engine: SilenceDetector(rule, settings),
}


class Verdict(NamedTuple):
    """What the engine made of one post (a NamedTuple: built once per post, on the hot path)."""

    rules: tuple[str, ...]
    sentiment: float | None
    signals: tuple[Signal, ...]


# A rule's posts wait for its batched detectors (see `RuleDetector.batched`) until this many have
# gathered or `BATCH_SECONDS` of engine time have passed, whichever comes first: a signal comes at
# most that much later, and a rule's window detectors do their per-call work once per batch. With
# 1,000 rules, 1 s batches (about 3 posts each) left those detectors at 57% of VADER's cost per
# post, 2 s batches at 36%, 5 s at 26%: 2 s is what a signal a second later buys. The post count only
# bounds a busy rule's batch (one hand-over stays short); at 32 the busiest rules of 1,000 handed
# over several times a second, and 256 took the engine from 0.58 to 0.61 of VADER's throughput.
BATCH_POSTS = 256
BATCH_SECONDS = 2.0


class _RuleState:
    """One rule's detectors, with the settings each was built from (to keep them on reload), and
    the posts waiting for its batched detectors."""

    __slots__ = ("all", "at_once", "batched", "detectors", "pending", "queued")

    def __init__(self) -> None:
        self.detectors: dict[str, tuple[BaseModel, RuleDetector]] = {}
        self.all: tuple[RuleDetector, ...] = ()
        # Built once, walked for every matched post: the detectors that see each post as it comes
        # (viral growth, campaigns: they follow posts, not windows) and the batched ones.
        self.at_once: tuple[RuleDetector, ...] = ()
        self.batched: tuple[RuleDetector, ...] = ()
        self.pending = Batch()
        self.queued = False  # listed in `Engine._waiting`

    def seal(self) -> _RuleState:
        self.all = tuple(detector for _, detector in self.detectors.values())
        self.at_once = tuple(d for d in self.all if not d.batched)
        self.batched = tuple(d for d in self.all if d.batched)
        return self


class Engine:
    def __init__(
        self, rules: Sequence[RuleConfig], config: EngineConfig, scorer: SentimentScorer | None = None
    ) -> None:
        self.config: EngineConfig = config
        self._scorer = scorer
        self.rules: dict[str, _RuleState] = {}
        self.near_duplicates: NearDuplicateIndex | None = None
        self.campaign_rules: frozenset[str] = frozenset()
        self.stream: list[StreamDetector] = []
        self._waiting: list[_RuleState] = []  # rules with posts pending for their batched detectors
        self._flush_at = -math.inf  # engine time at which every pending batch is handed over
        # Signals raised while handing batches over outside `observe` / `tick` (a snapshot, a
        # reload): returned by the next call that returns signals.
        self._held: list[Signal] = []
        # The crisis vocabulary most rules share: a post's crisis words are found while its word
        # list is still at hand (see `observe`).
        self._crisis_words: frozenset[str] | None = None
        if config.source_silence.enabled:
            self.stream.append(SourceSilenceDetector(config.source_silence))
        if config.new_cashtag.enabled:
            self.stream.append(NewCashtagDetector(config.new_cashtag))
        self.load_rules(rules)

    @property
    def scorer(self) -> SentimentScorer:
        if self._scorer is None:  # built on first use: the daemon scores in a worker process instead
            self._scorer = SentimentScorer(self.config.lexicon_file)
        return self._scorer

    # -- rules ------------------------------------------------------------------------------------
    def load_rules(self, rules: Sequence[RuleConfig]) -> None:
        """(Re)build the matcher; a rule's detectors whose settings did not change keep their state."""
        self._held += self.flush()
        self.matcher = RuleMatcher(rules)
        resolved = {
            rule.name: {
                kind: settings
                for kind in RULE_DETECTORS
                if (settings := resolve_settings(kind, self.config, rule)) is not None
            }
            for rule in rules
        }
        self._share_near_duplicates([kinds["campaign"] for kinds in resolved.values() if "campaign" in kinds])
        self.campaign_rules = frozenset(name for name, kinds in resolved.items() if "campaign" in kinds)
        kept: dict[str, _RuleState] = {}
        for name, kinds in resolved.items():
            previous = self.rules.get(name)
            state = _RuleState()
            for kind, settings in kinds.items():
                old = previous.detectors.get(kind) if previous is not None else None
                if old is not None and old[0] == settings:
                    state.detectors[kind] = old
                else:
                    state.detectors[kind] = (settings, RULE_DETECTORS[kind](name, settings, self))
            kept[name] = state.seal()
        self.rules = kept
        self._crisis_words = _most_shared_crisis_words(kept.values())

    def _share_near_duplicates(self, settings: list[Any]) -> None:
        """One near-duplicate index for every rule's campaign detector (kept on a reload that does
        not change what it needs)."""
        if not settings:
            self.near_duplicates = None
            return
        wanted = index_for(settings)
        current = self.near_duplicates
        if current is None or (
            current.max_distance,
            current.min_chars,
            current.window,
            current.max_clusters,
        ) != (wanted.max_distance, wanted.min_chars, wanted.window, wanted.max_clusters):
            self.near_duplicates = wanted

    def detectors(self, rule: str) -> dict[str, RuleDetector]:
        """The rule's detectors by kind, with every post seen so far handed over to them."""
        self._held += self.flush()
        state = self.rules.get(rule)
        return {} if state is None else {kind: d for kind, (_, d) in state.detectors.items()}

    # -- posts ------------------------------------------------------------------------------------
    def match(self, post: Post) -> list[CompiledRule]:
        """The rules `post` matches (step one; sentiment is then scored for matched posts only)."""
        return self.matcher.match(post)

    def observe(
        self,
        post: Post,
        matched: list[CompiledRule],
        sentiment: float | None,
        now: float,
        facts: TextFacts | None = None,
    ) -> Verdict:
        """Step two: feed a post (matched and scored, or not matched) to the detectors. `facts` are
        what the sentiment worker worked out beside the score (words, fingerprint), if it did."""
        signals: list[Signal] = []
        if self._held:
            signals, self._held = self._held, []
        for watcher in self.stream:
            signals += watcher.observe(now, post, ())
        if now >= self._flush_at:
            signals += self.flush()
            self._flush_at = now + BATCH_SECONDS
        if not matched:
            return Verdict((), None, tuple(signals))
        obs = Observation(now, post, sentiment)
        if facts is not None:
            obs.known(facts[1].split(), facts[2])
        names = tuple([rule.name for rule in matched])
        index = self.near_duplicates
        if index is not None and not self.campaign_rules.isdisjoint(names):
            obs.cluster = index.place(obs, names)  # once for all the rules' campaign detectors
        if self._crisis_words is not None:
            obs.found(self._crisis_words)  # kept by `release`, for the batched crisis detectors
        rules = self.rules
        waiting = self._waiting
        for name in names:
            state = rules.get(name)
            if state is None:
                continue
            for detector in state.at_once:
                fired = detector.observe(obs)
                if fired:
                    signals += self._with_composites(state, fired)
            if state.batched:
                pending = state.pending
                if pending and now < pending[-1].ts:
                    signals += self._hand_over(state)  # a batch never goes back in time
                    pending = state.pending
                pending.append(obs)
                if len(pending) >= BATCH_POSTS:
                    signals += self._hand_over(state)
                elif not state.queued:
                    state.queued = True
                    waiting.append(state)
        obs.release()
        return Verdict(names, sentiment, tuple(signals))

    def _hand_over(self, state: _RuleState) -> list[Signal]:
        """Give the rule's batched detectors its pending posts."""
        batch = state.pending
        if not batch:
            return []
        state.pending = Batch()
        signals: list[Signal] = []
        for detector in state.batched:
            fired = detector.observe_many(batch)
            if fired:
                signals += self._with_composites(state, fired)
        return signals

    def flush(self) -> list[Signal]:
        """Hand every pending batch over now (the engine does it every `BATCH_SECONDS` by itself)."""
        signals: list[Signal] = []
        waiting, self._waiting = self._waiting, []
        for state in waiting:
            state.queued = False
            signals += self._hand_over(state)
        return signals

    def _with_composites(self, state: _RuleState, fired: list[Signal]) -> list[Signal]:
        """Tell the rule's composite detectors (crisis) about its other signals."""
        if not fired:
            return fired
        composite = state.detectors.get("crisis")
        if composite is None:
            return fired
        note = getattr(composite[1], "note_signal", None)
        if note is None:
            return fired
        extra: list[Signal] = []
        for signal in fired:
            if signal.kind != composite[1].kind:
                extra += note(signal)
        return fired + extra

    def process(self, post: Post, now: float) -> Verdict:
        """Match, score and observe in one call (replays and tests; the daemon splits the steps)."""
        matched = self.matcher.match(post)
        sentiment = self.scorer.score(post.text) if matched else None
        return self.observe(post, matched, sentiment, now)

    def process_many(self, posts: Sequence[tuple[Post, float]]) -> list[Verdict]:
        """`process` for several (post, now) pairs, in order: the same verdicts, in three passes (match
        them all, score the matched ones, then observe them all). One post at a time, VADER's lexicon
        and the rules' state keep pushing each other out of the CPU caches; by passes, with 1,000
        rules, the engine took a fifth less time on the benchmark's posts."""
        match = self.matcher.match
        matched = [match(post) for post, _ in posts]
        score = self.scorer.score
        scores = [score(post.text) if hits else None for (post, _), hits in zip(posts, matched, strict=True)]
        observe = self.observe
        return [
            observe(post, hits, sentiment, now)
            for (post, now), hits, sentiment in zip(posts, matched, scores, strict=True)
        ]

    def reobserve(self, post: Post, now: float) -> list[Signal]:
        """A post seen before came again (a re-fetch, an updated repost): detectors that follow posts
        over time (viral growth) get the new engagement counts; nothing is counted twice."""
        signals: list[Signal] = []
        for rule in self.matcher.match(post):
            state = self.rules.get(rule.name)
            if state is None:
                continue
            fired: list[Signal] = []
            for detector in state.all:
                fired += detector.reobserve(now, post)
            signals += self._with_composites(state, fired)
        return signals

    def tick(self, now: float) -> list[Signal]:
        """Let time pass with no post: windows close, silences are noticed."""
        signals, self._held = self._held, []
        if now >= self._flush_at:
            signals += self.flush()
            self._flush_at = now + BATCH_SECONDS
        for watcher in self.stream:
            signals += watcher.advance(now)
        if self.near_duplicates is not None:
            self.near_duplicates.expire(now)
        for state in self.rules.values():
            fired: list[Signal] = []
            # A rule with posts still pending is not quiet, and its window detectors must see those
            # posts before time moves past them: they catch up when the batch is handed over.
            for detector in state.at_once if state.pending else state.all:
                fired += detector.advance(now)
            signals += self._with_composites(state, fired)
        return signals

    # -- state ------------------------------------------------------------------------------------
    def snapshot(self) -> str:
        """The state of every rule's detectors, the stream detectors and the near-duplicate index,
        as JSON. Each part is encoded as soon as it is built, and the campaign views and the index
        a row at a time (`snapshot_json`), so only one part's rows exist at once: built whole, a
        busy run's snapshot was megabytes of small objects, and Python keeps the arenas they took
        (the soak's resident size rose at each snapshot). The text is what `json.dumps` of the whole
        gives."""
        self._held += self.flush()  # the state of every post seen so far
        rules = (
            (name, _json_object((kind, _snapshot_json(d)) for kind, (_, d) in rule.detectors.items()))
            for name, rule in self.rules.items()
        )
        parts = [
            ("version", encode_json(SNAPSHOT_VERSION)),
            ("rules", _json_object(rules)),
            # (one stream detector per kind)
            ("stream", _json_object((watcher.kind, _snapshot_json(watcher)) for watcher in self.stream)),
        ]
        if self.near_duplicates is not None:
            parts.append(("near_duplicates", _snapshot_json(self.near_duplicates)))
        return _json_object(parts)

    def restore(self, blob: str) -> int:
        """Restore detector state for the rules that still exist; returns how many rules were restored."""
        state = json.loads(blob)
        if state.get("version") != SNAPSHOT_VERSION:
            return 0
        restored = 0
        self._held += self.flush()
        if self.near_duplicates is not None and state.get("near_duplicates"):
            self.near_duplicates.restore(state["near_duplicates"])
        for name, kinds in state.get("rules", {}).items():
            rule = self.rules.get(name)
            if rule is None:
                continue
            for kind, detector_state in kinds.items():
                entry = rule.detectors.get(kind)
                if entry is not None and detector_state:
                    entry[1].restore(detector_state)
            restored += 1
        for detector in self.stream:
            stream_state = state.get("stream", {}).get(detector.kind)
            if stream_state:
                detector.restore(stream_state)
        return restored


def _json_object(members: Iterable[tuple[str, str]]) -> str:
    """A JSON object from (key, value already encoded) pairs, in order."""
    return "{" + ",".join(encode_json(key) + ":" + value for key, value in members) + "}"


def _snapshot_json(holder: Any) -> str:
    """One part of the snapshot as JSON: the holder's own `snapshot_json()` where it has one (built
    a row at a time), else its `snapshot()` encoded."""
    own = getattr(holder, "snapshot_json", None)
    return str(own()) if own is not None else encode_json(holder.snapshot())


def _most_shared_crisis_words(rules: Iterable[_RuleState]) -> frozenset[str] | None:
    """The crisis vocabulary of the most rules (they share one instance: `shared_vocabulary`)."""
    counts: Counter[frozenset[str]] = Counter()
    for state in rules:
        entry = state.detectors.get("crisis")
        if entry is not None:
            vocabulary = getattr(entry[1], "crisis_terms", None)
            if isinstance(vocabulary, frozenset):
                counts[vocabulary] += 1
    return counts.most_common(1)[0][0] if counts else None
