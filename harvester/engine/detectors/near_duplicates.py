"""Near-duplicate clusters over the matched stream, shared by every rule's campaign detector.

Fingerprinting a post and looking up its neighbours costs about a tenth of VADER; doing it once per
rule a post matched made the campaign detector the costliest part of the engine with many rules.
So the engine places each matched post here once, and a rule's campaign detector only counts the
accounts of the clusters its posts fall in, and only once a cluster holds as many posts (of any
rule) as the rule needs accounts: nearly every post opens a cluster of its own and stays alone or
nearly so, and for those a rule does nothing at all. A cluster keeps its latest posts (`recent`) so
that a rule joining late counts the ones that were its own.

Each post is reduced to its words (no URLs, @mentions, punctuation or emoji) and fingerprinted with
a 64-bit SimHash (`harvester.engine.simhash`). A post joins the nearest live cluster whose *seed*
(the fingerprint of the post that opened it) is within `max_distance` bits, or opens a new one. The
clusters are balls around their seed, not chains: letting every member recruit its own neighbours
lets a cluster drift across a family of templated everyday posts ("the <brand> app was fine", "the
<brand> card was fine ...") until it spans many unrelated accounts. Seeds are found through 16-bit
LSH bands (`BandSplit`); a cluster is also indexed under the fingerprints of up to `_MAX_MEMBERS`
of its posts, which finds the variants whose differences hit every band of the seed. A post costs a
handful of dict lookups however many clusters are live.

A cluster expires `window` seconds after its last post, and at most `max_clusters` are kept (the
least recently active go first), so memory is bounded whatever the traffic. Pure reposts
("RT @user: ...") and texts shorter than `min_chars` are not placed: the first are one post going
viral (the viral detector's business), the second too alike by chance ("gm", "lol").
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from harvester.engine.simhash import BandSplit, is_repost

if TYPE_CHECKING:
    from harvester.engine.detectors.base import Observation

_MAX_MEMBERS = 16  # distinct fingerprints a cluster is found under
TEXT_CHARS = 280  # of the representative text kept for the alert


class Placed(NamedTuple):
    obs: Observation
    rules: tuple[str, ...]
    chars: int
    fingerprint: int


@dataclass(slots=True)
class NearDuplicates:
    """One cluster of near-identical texts, as shared by all rules."""

    seed: int
    text: str
    first_seen: float
    last_seen: float
    posts: int = 0
    members: list[int] = field(default_factory=list)
    # Its latest posts with the rules each matched, their length and fingerprint: a rule only looks
    # at a cluster once it holds as many posts as the rule needs accounts, and then counts its own
    # posts among these.
    recent: deque[Placed] = field(default_factory=deque)
    # The newest placed post's fingerprint and length, for rules with stricter settings.
    fingerprint: int = 0
    chars: int = 0


class NearDuplicateIndex:
    def __init__(
        self, *, max_distance: int, min_chars: int, window: float, max_clusters: int, recent: int = 64
    ) -> None:
        self.recent = recent
        self.max_distance = max_distance
        self.min_chars = min_chars
        self.window = window
        self.max_clusters = max_clusters
        self.bands = BandSplit(max_distance)
        self.clusters: OrderedDict[int, NearDuplicates] = OrderedDict()  # by seed, least recent first
        self.buckets: dict[int, int | set[int]] = {}  # band key -> member fingerprint(s)
        self.seed_of: dict[int, int] = {}  # member fingerprint -> its cluster's seed
        self.now = -math.inf

    def place(self, obs: Observation, rules: tuple[str, ...]) -> NearDuplicates | None:
        """The cluster `obs` joins (or opens), or None if it is too short or a pure repost."""
        ts = obs.ts
        self.expire(ts)
        text = obs.post.text
        if ts < self.now - self.window or is_repost(text):
            return None
        features = obs.words
        chars = sum(map(len, features)) + len(features) - 1
        if chars < self.min_chars:
            return None
        fingerprint = obs.fingerprint
        keys = self.bands.keys(fingerprint)
        cluster = self._nearest(fingerprint, keys)
        if cluster is None:
            cluster = NearDuplicates(
                fingerprint, text[:TEXT_CHARS], ts, ts, recent=deque(maxlen=self.recent)
            )
            self.clusters[fingerprint] = cluster
            self._index(cluster, fingerprint, keys)
            if len(self.clusters) > self.max_clusters:
                self._remove(next(iter(self.clusters.values())))
        else:
            if len(cluster.members) < _MAX_MEMBERS and fingerprint not in self.seed_of:
                self._index(cluster, fingerprint, keys)
            cluster.last_seen = max(cluster.last_seen, ts)
            self.clusters.move_to_end(cluster.seed)
        cluster.posts += 1
        cluster.fingerprint = fingerprint
        cluster.chars = chars
        cluster.recent.append(Placed(obs, rules, chars, fingerprint))
        return cluster

    def expire(self, ts: float) -> None:
        """Drop the clusters idle for a whole window (oldest first: usually nothing to do)."""
        self.now = max(self.now, ts)
        cutoff = self.now - self.window
        clusters = self.clusters
        while clusters:
            oldest = next(iter(clusters.values()))
            if oldest.last_seen >= cutoff:
                return
            self._remove(oldest)

    # A band bucket holds one fingerprint as a bare int (nearly all of them: a set per bucket would
    # cost four allocations per post) and several as a set.
    def _nearest(self, fingerprint: int, keys: list[int]) -> NearDuplicates | None:
        seed_of = self.seed_of
        seed = seed_of.get(fingerprint)
        if seed is not None:
            return self.clusters[seed]
        best, best_distance = None, self.max_distance + 1
        buckets = self.buckets
        for key in keys:
            bucket = buckets.get(key)
            if bucket is None:
                continue
            for member in (bucket,) if isinstance(bucket, int) else bucket:
                seed = seed_of[member]
                d = (fingerprint ^ seed).bit_count()
                if d < best_distance:
                    best, best_distance = seed, d
        return None if best is None else self.clusters[best]

    def _index(self, cluster: NearDuplicates, fingerprint: int, keys: list[int]) -> None:
        cluster.members.append(fingerprint)
        self.seed_of[fingerprint] = cluster.seed
        buckets = self.buckets
        for key in keys:
            held = buckets.get(key)
            if held is None:
                buckets[key] = fingerprint
            elif isinstance(held, int):
                buckets[key] = {held, fingerprint}
            else:
                held.add(fingerprint)

    def _remove(self, cluster: NearDuplicates) -> None:
        del self.clusters[cluster.seed]
        buckets = self.buckets
        for member in cluster.members:
            del self.seed_of[member]
            for key in self.bands.keys(member):
                held = buckets.get(key)
                if held is None:
                    continue
                if isinstance(held, int):
                    if held == member:
                        del buckets[key]
                else:
                    held.discard(member)
                    if len(held) == 1:
                        buckets[key] = next(iter(held))

    # -- persistence -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Clusters of two posts or more (the one-post clusters, nearly all of them, are not worth a
        restart), so that a campaign's posts after a restart join the cluster they joined before."""
        rows = [
            [c.seed, c.text, c.first_seen, c.last_seen, c.posts, c.members]
            for c in self.clusters.values()
            if c.posts >= 2
        ]
        return {"clusters": rows}

    def restore(self, state: dict[str, Any]) -> None:
        self.clusters.clear()
        self.buckets.clear()
        self.seed_of.clear()
        for seed, text, first, last, posts, members in state.get("clusters", []):
            cluster = NearDuplicates(
                int(seed), str(text), float(first), float(last), int(posts), recent=deque(maxlen=self.recent)
            )
            self.clusters[cluster.seed] = cluster
            for member in map(int, members):
                if member not in self.seed_of:
                    self._index(cluster, member, self.bands.keys(member))
        self.now = max((c.last_seen for c in self.clusters.values()), default=-math.inf)
