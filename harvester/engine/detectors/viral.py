"""Viral post: one post whose engagement grows fast, seen over successive sightings or through the
reposts, replies and quotes that reference it.

A post of the rule is followed for `track` seconds from when it is first seen, in a dict kept in
least-recently-seen order and cut to `max_tracked` entries, so a post that keeps being seen or
referenced stays while the long tail of posts nobody returns to goes first. Only posts that show
some engagement at first sight (a tenth of `min_engagement`), come from a big account (10,000
followers), are referenced, or are fetched again are followed: the rest, nearly every post, cost a
dict lookup. A post seen once and nothing more (most of those followed) cannot be viral yet, so it
waits as a *candidate*, a small tuple in a table an eighth the size of `max_tracked`, and moves to
the followed posts when it is seen again or referenced: memory goes to the posts with momentum, and
its bound is reached within minutes on a busy rule instead of hours of the long tail filling it. A
candidate pushed out before it comes back is measured like a post never followed: a post first
followed on a re-fetch has its growth measured from its creation time. One first known from its
references has no known author until it is seen itself, so until then its author's replies to it
count as a referrer. A post goes viral in one of two ways:

- velocity: a later sighting (`reobserve`, a re-fetch with fresh counts) shows its engagement grew by
  at least `min_velocity` per second since an earlier sighting, and it has at least `min_engagement`.
  Growth is measured over at least `_MIN_SPAN_S`: two fetches a moment apart would otherwise turn a
  single new like into "ten per second".
- references: posts whose `ref` is its uid, from at least `min_references` distinct accounts other
  than its author (a thread of self-replies is not reach), within the tracking period.

A repost that carries the original's running counts (as some platforms report them) is a reference,
never a sighting of the original, and a pure repost ("RT @user: ...") is not followed as a post of
its own either: its counts are the original's, and measuring them would alert on the repost. Quotes
and replies are followed like any post (they can go viral themselves). A post referenced before it is
seen (published before the daemon started, or not matching the rule itself) is followed from its
first reference, knowing only its uid until it shows up.

One signal per post: after it the post waits `cooldown`, and then signals again only at a higher
severity. Severity grows with how far past its threshold the post is and with its reach (author
followers, engagement).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from harvester.config.detectors import ViralConfig
from harvester.engine.detectors.base import MIN_COOLDOWN_S, Observation, RuleDetector, at, finite
from harvester.engine.simhash import is_repost
from harvester.models import Post, Severity, Signal

KIND = "viral_post"
_FOLLOW_FROM_SHARE = 10  # a first sighting with min_engagement / this is followed at once
_FOLLOW_AUTHORS_FROM = 10_000  # and so is every post of an account this big (its reach is its risk)
_MIN_SPAN_S = 10.0  # shortest time between two sightings that a velocity is measured over
_SWEEP_S = 60.0  # how often (event time) posts past their tracking period are dropped
_REFERRERS_CAP = 10  # x min_references: distinct referrers counted beyond this add nothing
_BIG_REACH = 100_000  # followers or engagement: a post this visible is one level more severe
_LEVELS = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)
_CANDIDATE_SHARE = 8  # candidates (posts seen once) kept: max_tracked / this, at least _MIN_CANDIDATES
_MIN_CANDIDATES = 16

# A post seen once: (when, engagement, author, url, followers). A tuple, not a `_Tracked`: a rule
# holds hundreds of these, and nearly all of them are never seen again.
_Candidate = tuple[float, int, str, str | None, int | None]


@dataclass(slots=True)
class _Tracked:
    uid: str
    first_seen: float
    last_seen: float
    author: str | None = None  # None until the post itself is seen (known from references only)
    url: str | None = None
    followers: int | None = None
    engagement: int = 0
    observations: int = 0
    # The sighting growth is measured from (None before the first sighting with counts).
    span_ts: float | None = None
    span_engagement: int = 0
    velocity: float = 0.0  # engagement per second over the last measured span
    references: int = 0  # every referencing post
    # Hashes of distinct referencing accounts, and a min-heap of referencing posts: None until the
    # first reference (most followed posts never get one; an empty set costs 216 bytes).
    referrers: set[int] | None = None
    referrers_restored: int = 0  # distinct referrers counted before a restart (identities not kept)
    examples: list[tuple[int, str]] | None = None
    fired_rank: int = -1
    cooldown_until: float = -math.inf

    @property
    def distinct_referrers(self) -> int:
        return (0 if self.referrers is None else len(self.referrers)) + self.referrers_restored

    def born(self, created: float, ts: float) -> None:
        """Measure growth from the post's creation (with no engagement then): for a post first
        followed on a re-fetch. A creation time in the future (clock skew) counts as now."""
        if self.span_ts is None:
            self.span_ts, self.span_engagement = min(created, ts), 0

    def sighting(self, post: Post, ts: float) -> None:
        """The post itself, with its own counts."""
        self.observations += 1
        self.author, self.url = post.author, post.url or self.url
        if post.followers is not None:
            self.followers = post.followers
        engagement = post.engagement
        if self.span_ts is None:
            self.span_ts, self.span_engagement, self.engagement = ts, engagement, engagement
            return
        if ts < self.span_ts:
            return  # a stale fetch arriving late says nothing about growth now
        self.engagement = engagement
        span = ts - self.span_ts
        if span >= _MIN_SPAN_S:
            self.velocity = (engagement - self.span_engagement) / span
            self.span_ts, self.span_engagement = ts, engagement

    def row(self) -> list[Any]:
        """A compact, JSON-ready form for the snapshot (referrer identities are not kept)."""
        return [
            self.uid, self.author, self.url, self.followers, self.first_seen, self.last_seen,
            self.engagement, self.observations, self.span_ts, self.span_engagement, self.velocity,
            self.references, self.distinct_referrers, self.fired_rank, finite(self.cooldown_until),
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: list[Any]) -> _Tracked:
        (
            uid, author, url, followers, first, last, engagement, observations, span_ts,
            span_engagement, velocity, references, referrers, rank, until,
        ) = row  # fmt: skip
        tracked = cls(str(uid), float(first), float(last), author, url, followers)
        tracked.engagement, tracked.observations = int(engagement), int(observations)
        tracked.span_ts = None if span_ts is None else float(span_ts)
        tracked.span_engagement, tracked.velocity = int(span_engagement), float(velocity)
        tracked.references, tracked.referrers_restored = int(references), int(referrers)
        tracked.fired_rank = int(rank)
        tracked.cooldown_until = -math.inf if until is None else float(until)
        return tracked

    def referenced_by(self, post: Post, cap: int, examples: int) -> None:
        self.references += 1
        if self.referrers is None:
            self.referrers, self.examples = set(), []
        if post.author != self.author and len(self.referrers) < cap:
            self.referrers.add(hash(post.author))
        item = (post.engagement, post.uid)
        kept = self.examples
        assert kept is not None
        if len(kept) < examples:
            heapq.heappush(kept, item)
        elif item > kept[0]:
            heapq.heapreplace(kept, item)

    @classmethod
    def promoted(cls, uid: str, candidate: _Candidate) -> _Tracked:
        """A candidate seen again or referenced: followed from its first sighting, exactly as if it
        had been followed all along."""
        ts, engagement, author, url, followers = candidate
        tracked = cls(uid, ts, ts, author, url, followers, engagement, 1)
        tracked.span_ts, tracked.span_engagement = ts, engagement
        return tracked


class ViralPostDetector(RuleDetector):
    kind = KIND

    def __init__(self, rule: str, config: ViralConfig, examples: int = 3) -> None:
        super().__init__(rule)
        self.config = config
        self.examples = examples
        self.cooldown = max(config.cooldown, MIN_COOLDOWN_S)
        self.referrers_cap = _REFERRERS_CAP * config.min_references
        # Engagement at first sight from which a post is followed at once (see `observe`).
        self.follow_from = max(1, config.min_engagement // _FOLLOW_FROM_SHARE)
        self.posts: OrderedDict[str, _Tracked] = OrderedDict()  # least recently seen first
        # Posts seen once, oldest first (see the module docstring), at most `max_candidates`.
        self.candidates: dict[str, _Candidate] = {}
        self.max_candidates = max(_MIN_CANDIDATES, config.max_tracked // _CANDIDATE_SHARE)
        self.now = -math.inf
        self.next_sweep = -math.inf
        # The rule-wide MIN_COOLDOWN_S gap: a post ready while it runs waits here, not dropped.
        self.quiet_until = -math.inf
        self.waiting: dict[str, None] = {}

    # -- observation -----------------------------------------------------------------------------
    def observe(self, obs: Observation) -> list[Signal]:
        ts, post = obs.ts, obs.post
        signals = self.advance(ts) if ts >= self.next_sweep or self.waiting else []
        if ts > self.now:  # noqa: PLR1730 (max() is a call, on every post of every rule)
            self.now = ts
        # Hot path: a first sighting with little engagement is not followed (nearly every post). If it
        # is fetched again later, `reobserve` measures its growth from its creation instead.
        uid = post.uid
        if uid in self.posts or uid in self.candidates:
            if not is_repost(post.text):
                self._sighting(post, ts, signals)
        elif (
            obs.engagement >= self.follow_from or (post.followers or 0) >= _FOLLOW_AUTHORS_FROM
        ) and not is_repost(post.text):
            self._candidate(post, ts)
        ref = post.ref
        if ref is not None and ref != post.uid:
            target = self._follow(ref, ts)
            target.referenced_by(post, self.referrers_cap, self.examples)
            self._judge(target, ts, signals)
        return signals

    def reobserve(self, ts: float, post: Post) -> list[Signal]:
        """A re-fetch: its fresh counts are what velocity is measured on. (Its `ref`, if any, was
        counted when it first arrived; a pure repost's counts are not its own and are ignored.)"""
        signals = self.advance(ts)
        if not is_repost(post.text):
            if post.uid not in self.posts and post.uid not in self.candidates:
                # Not followed since its first sighting: it has grown from nothing since it was made.
                self._follow(post.uid, ts).born(post.created_at.timestamp(), ts)
            self._sighting(post, ts, signals)
        return signals

    def advance(self, ts: float) -> list[Signal]:
        """Drop posts past their tracking period; fire a post held by the rule-wide gap."""
        self.now = max(self.now, ts)
        if self.now >= self.next_sweep:
            self.next_sweep = self.now + _SWEEP_S
            cutoff = self.now - self.config.track
            for uid in [uid for uid, p in self.posts.items() if p.first_seen < cutoff]:
                self._forget(uid)
            candidates = self.candidates
            for uid in [uid for uid, c in candidates.items() if c[0] < cutoff]:
                del candidates[uid]
        if not self.waiting or self.now < self.quiet_until:
            return []
        uid = next(iter(self.waiting))
        del self.waiting[uid]
        signals: list[Signal] = []
        tracked = self.posts.get(uid)
        if tracked is not None:
            self._judge(tracked, self.now, signals)
        return signals

    # -- tracking --------------------------------------------------------------------------------
    def _candidate(self, post: Post, ts: float) -> None:
        """A first sighting worth following: wait as a candidate until seen again or referenced."""
        candidates = self.candidates
        candidates[post.uid] = (ts, post.engagement, post.author, post.url, post.followers)
        if len(candidates) > self.max_candidates:
            del candidates[next(iter(candidates))]

    def _follow(self, uid: str, ts: float) -> _Tracked:
        """The tracked entry for `uid`, made most recent; a new one if unknown or past its period
        (a candidate's, from its first sighting)."""
        tracked = self.posts.get(uid)
        cutoff = self.now - self.config.track
        if tracked is not None and tracked.first_seen < cutoff:
            self._forget(uid)
            tracked = None
        if tracked is None:
            candidate = self.candidates.pop(uid, None)
            if candidate is not None and candidate[0] >= cutoff:
                tracked = _Tracked.promoted(uid, candidate)
                tracked.last_seen = max(tracked.last_seen, ts)
            else:
                tracked = _Tracked(uid, ts, ts)
            self.posts[uid] = tracked
            if len(self.posts) > self.config.max_tracked:
                self._forget(next(iter(self.posts)))
        else:
            tracked.last_seen = max(tracked.last_seen, ts)
            self.posts.move_to_end(uid)
        return tracked

    def _forget(self, uid: str) -> None:
        del self.posts[uid]
        self.waiting.pop(uid, None)

    def _sighting(self, post: Post, ts: float, signals: list[Signal]) -> None:
        tracked = self._follow(post.uid, ts)
        tracked.sighting(post, ts)
        self._judge(tracked, ts, signals)

    # -- verdict ---------------------------------------------------------------------------------
    def _judge(self, tracked: _Tracked, ts: float, signals: list[Signal]) -> None:
        cfg = self.config
        fast = tracked.velocity >= cfg.min_velocity and tracked.engagement >= cfg.min_engagement
        referenced = tracked.distinct_referrers >= cfg.min_references
        if not (fast or referenced):
            return
        score = max(
            tracked.velocity / cfg.min_velocity if fast else 0.0,
            tracked.distinct_referrers / cfg.min_references if referenced else 0.0,
        )
        severity = _severity(score, max(tracked.followers or 0, tracked.engagement))
        if tracked.fired_rank >= 0 and (ts < tracked.cooldown_until or severity.rank <= tracked.fired_rank):
            return
        if ts < self.quiet_until:
            self.waiting[tracked.uid] = None
            return
        tracked.fired_rank = severity.rank
        tracked.cooldown_until = ts + self.cooldown
        self.quiet_until = ts + MIN_COOLDOWN_S
        signals.append(self._signal(tracked, ts, severity, score, "velocity" if fast else "references"))

    def _signal(self, tracked: _Tracked, ts: float, severity: Severity, score: float, trigger: str) -> Signal:
        cfg = self.config
        age = ts - tracked.first_seen
        by = f" by @{tracked.author}" if tracked.author else ""
        if trigger == "velocity":
            observed, baseline = tracked.velocity, cfg.min_velocity
            how = f"engagement growing {tracked.velocity:.1f}/s to {tracked.engagement}"
        else:
            observed, baseline = float(tracked.distinct_referrers), float(cfg.min_references)
            how = f"{tracked.distinct_referrers} accounts reposted, quoted or replied in {age:.0f}s"
        summary = f"post {tracked.uid}{by} is going viral for rule {self.rule!r}: {how}"
        evidence: dict[str, Any] = {
            "uid": tracked.uid,
            "url": tracked.url,
            "author": tracked.author,
            "followers": tracked.followers,
            "engagement": tracked.engagement,
            "velocity_per_s": round(tracked.velocity, 3),
            "references": tracked.references,
            "distinct_referrers": tracked.distinct_referrers,
            "observations": tracked.observations,
            "first_seen": at(tracked.first_seen).isoformat(),
            "trigger": trigger,
            "example_uids": [
                tracked.uid,
                *(u for _, u in heapq.nlargest(self.examples, tracked.examples or [])),
            ],
        }
        # The uid names the post: two posts first seen in the same instant must not share an id.
        key = f"{KIND}:{tracked.uid}:{severity.value}"
        return Signal(
            id=Signal.make_id(self.rule, key, at(tracked.first_seen)),
            rule=self.rule,
            kind=KIND,
            severity=severity,
            at=at(ts),
            window_start=at(tracked.first_seen),
            window_end=at(ts),
            observed=round(observed, 3),
            baseline=baseline,
            score=round(score, 2),
            summary=summary,
            evidence=evidence,
        )

    # -- persistence -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Only posts with momentum: seen more than once, referenced, or already signalled. The long
        tail seen once is not worth a restart (seen again, it is simply followed afresh); signalled
        posts are kept so that a restart does not alert on them again. Referrer identities are not
        kept, only their count."""
        rows = [
            t.row() for t in self.posts.values() if t.observations > 1 or t.references or t.fired_rank >= 0
        ]
        return {"posts": rows, "quiet_until": finite(self.quiet_until)}

    def restore(self, state: dict[str, Any]) -> None:
        self.posts.clear()
        self.candidates.clear()
        self.waiting.clear()
        for row in state.get("posts", []):
            tracked = _Tracked.from_row(row)
            self.posts[tracked.uid] = tracked
        quiet = state.get("quiet_until")
        self.quiet_until = -math.inf if quiet is None else float(quiet)
        self.now = max((t.last_seen for t in self.posts.values()), default=-math.inf)


def _severity(score: float, reach: int) -> Severity:
    """Low just past the threshold, medium at 3x, high at 10x; one level more for a big audience."""
    level = 2 if score >= 10 else 1 if score >= 3 else 0
    if reach >= _BIG_REACH:
        level += 1
    return _LEVELS[min(level, len(_LEVELS) - 1)]
