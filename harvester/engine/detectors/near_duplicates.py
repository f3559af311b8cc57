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

Nearly every post stays alone, and most of the index's work was for them: a cluster object with its
deque of recent posts built for each, then evicted unread. So a post that opens a cluster is kept as
a `Lone` record (the placed post itself, a tuple) until a second post joins it; only then is it
promoted to a `Cluster`, with the first post as the oldest of its recent ones, so a rule that starts
counting then still counts it. Both answer what a rule reads of a cluster (`seed`, `posts`, `text`,
`recent`, `fingerprint`, `chars`): `NearDuplicates` is either.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeAlias

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


class _LoneFields(NamedTuple):
    seed: int  # the post's fingerprint
    last_seen: float  # the post's time
    obs: Observation
    rules: tuple[str, ...]
    chars: int
    keys: tuple[int, ...]  # its band keys, to take it out of the buckets without working them out again


class Lone(_LoneFields):
    """A cluster of one post, kept as the placed post itself (most clusters never get a second).
    The fields read for every post (`seed`, `last_seen`, `posts`) are plain tuple fields."""

    __slots__ = ()
    posts: ClassVar[int] = 1

    @property
    def fingerprint(self) -> int:
        return self.seed

    @property
    def text(self) -> str:
        return self.obs.post.text[:TEXT_CHARS]

    @property
    def first_seen(self) -> float:
        return self.last_seen

    @property
    def recent(self) -> tuple[Placed, ...]:
        return (self.placed(),)

    def placed(self) -> Placed:
        return Placed(self.obs, self.rules, self.chars, self.seed)


@dataclass(slots=True)
class Cluster:
    """A cluster of near-identical texts that two posts or more joined, as shared by all rules."""

    seed: int
    text: str
    first_seen: float
    last_seen: float
    posts: int = 0
    members: list[int] = field(default_factory=list)
    member_keys: list[tuple[int, ...]] = field(default_factory=list)  # each member's band keys
    # Its latest posts with the rules each matched, their length and fingerprint: a rule only looks
    # at a cluster once it holds as many posts as the rule needs accounts, and then counts its own
    # posts among these.
    recent: deque[Placed] = field(default_factory=deque)
    # The newest placed post's fingerprint and length, for rules with stricter settings.
    fingerprint: int = 0
    chars: int = 0


NearDuplicates: TypeAlias = Cluster | Lone


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
        # by seed, least recently active first
        self.clusters: OrderedDict[int, NearDuplicates] = OrderedDict()
        self.buckets: dict[int, int | set[int]] = {}  # band key -> member fingerprint(s)
        self.seed_of: dict[int, int] = {}  # member fingerprint -> its cluster's seed
        self.now = -math.inf

    def place(self, obs: Observation, rules: tuple[str, ...]) -> NearDuplicates | None:
        """The cluster `obs` joins (or opens), or None if it is too short or a pure repost."""
        ts = obs.ts
        self.now = max(self.now, ts)
        cutoff = self.now - self.window
        clusters = self.clusters
        # What `expire` would do, checked inline: it is called for every post and nearly always
        # finds the oldest cluster still live.
        if clusters and next(iter(clusters.values())).last_seen < cutoff:
            self._expire(cutoff)
        if ts < cutoff or is_repost(obs.post.text):
            return None
        features = obs.words
        chars = sum(map(len, features)) + len(features) - 1
        if chars < self.min_chars:
            return None
        fingerprint = obs.fingerprint
        keys = self.bands.keys(fingerprint)
        seed_of = self.seed_of
        buckets = self.buckets
        # The nearest seed: the cluster the very fingerprint was placed in, or else the nearest seed
        # of the members sharing a band with it (the first of equals, in band order).
        seed = seed_of.get(fingerprint)
        if seed is None:
            best_distance = self.max_distance + 1
            for key in keys:
                bucket = buckets.get(key)
                if bucket is None:
                    continue
                for member in (bucket,) if isinstance(bucket, int) else bucket:
                    candidate = seed_of[member]
                    d = (fingerprint ^ candidate).bit_count()
                    if d < best_distance:
                        seed, best_distance = candidate, d
        if seed is None:
            lone = tuple.__new__(Lone, (fingerprint, ts, obs, rules, chars, keys))
            clusters[fingerprint] = lone
            seed_of[fingerprint] = fingerprint
            for key in keys:  # `_index`, written out: this is most posts
                held = buckets.get(key)
                if held is None:
                    buckets[key] = fingerprint
                elif isinstance(held, int):
                    buckets[key] = {held, fingerprint}
                else:
                    held.add(fingerprint)
            if len(clusters) > self.max_clusters:
                self._remove(clusters.popitem(last=False)[1])
            return lone
        found = clusters[seed]
        cluster = self._promote(found) if isinstance(found, Lone) else found
        if len(cluster.members) < _MAX_MEMBERS and fingerprint not in seed_of:
            cluster.members.append(fingerprint)
            cluster.member_keys.append(keys)
            self._index(fingerprint, seed, keys)
        cluster.last_seen = max(cluster.last_seen, ts)
        clusters.move_to_end(seed)
        cluster.posts += 1
        cluster.fingerprint = fingerprint
        cluster.chars = chars
        cluster.recent.append(Placed(obs, rules, chars, fingerprint))
        return cluster

    def _promote(self, lone: Lone) -> Cluster:
        """A second post joins a lone one: from now on it is a cluster like any other."""
        ts, seed = lone.last_seen, lone.seed
        recent = deque((lone.placed(),), maxlen=self.recent)
        cluster = Cluster(seed, lone.text, ts, ts, 1, [seed], [lone.keys], recent, seed, lone.chars)
        self.clusters[seed] = cluster  # in the lone record's place (the caller moves it to the end)
        return cluster

    def expire(self, ts: float) -> None:
        """Drop the clusters idle for a whole window (oldest first: usually nothing to do)."""
        self.now = max(self.now, ts)
        self._expire(self.now - self.window)

    def _expire(self, cutoff: float) -> None:
        clusters = self.clusters
        while clusters:
            if next(iter(clusters.values())).last_seen >= cutoff:
                return
            self._remove(clusters.popitem(last=False)[1])

    # A band bucket holds one fingerprint as a bare int (nearly all of them: a set per bucket would
    # cost four allocations per post) and several as a set.
    def _index(self, fingerprint: int, seed: int, keys: tuple[int, ...]) -> None:
        self.seed_of[fingerprint] = seed
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
        """Take a cluster (already out of `clusters`) out of the buckets."""
        if isinstance(cluster, Lone):
            self._unindex(cluster.seed, cluster.keys)
        else:
            for member, keys in zip(cluster.members, cluster.member_keys, strict=True):
                self._unindex(member, keys)

    def _unindex(self, member: int, keys: tuple[int, ...]) -> None:
        del self.seed_of[member]
        buckets = self.buckets
        for key in keys:
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
            if isinstance(c, Cluster) and c.posts >= 2
        ]
        return {"clusters": rows}

    def restore(self, state: dict[str, Any]) -> None:
        self.clusters.clear()
        self.buckets.clear()
        self.seed_of.clear()
        for seed, text, first, last, posts, members in state.get("clusters", []):
            cluster = Cluster(
                int(seed), str(text), float(first), float(last), int(posts), recent=deque(maxlen=self.recent)
            )
            self.clusters[cluster.seed] = cluster
            for member in map(int, members):
                if member not in self.seed_of:
                    keys = self.bands.keys(member)
                    cluster.members.append(member)
                    cluster.member_keys.append(keys)
                    self._index(member, cluster.seed, keys)
        self.now = max((c.last_seen for c in self.clusters.values()), default=-math.inf)
