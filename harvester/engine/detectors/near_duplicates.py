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
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeAlias

from harvester.engine.simhash import BandSplit, is_repost

if TYPE_CHECKING:
    from harvester.engine.detectors.base import Observation
    from harvester.models import Post

_MAX_MEMBERS = 16  # distinct fingerprints a cluster is found under
_NO_BUCKETS = (None,) * BandSplit.BANDS
TEXT_CHARS = 280  # of the representative text kept for the alert


class PostRef(NamedTuple):
    """What a cluster's campaign views need of a post (not its text, times or other counts): a
    cluster keeps its latest posts for a whole window, and a whole `Post` is several times this."""

    uid: str
    author: str
    followers: int | None
    ref: str | None
    engagement: int

    @classmethod
    def of(cls, post: Post) -> PostRef:
        return tuple.__new__(cls, (post.uid, post.author, post.followers, post.ref, post.engagement))


class Placed(NamedTuple):
    """One of a cluster's latest posts: what a rule counts of it (its `PostRef` fields, flat), its time,
    the rules it matched, its length and its distance from the cluster's seed.

    One flat tuple, not the Observation (which can then go once the rules have seen the post) nor a
    tuple holding a `PostRef`: the index keeps tens of thousands of these, and one object per post is
    both less memory and less work. The distance, not the fingerprint: a small int, which Python
    shares, where a 64-bit one is an object of its own."""

    uid: str
    author: str
    followers: int | None
    ref: str | None
    engagement: int
    ts: float
    rules: tuple[str, ...]
    chars: int
    distance: int  # bits between the post's fingerprint and the cluster's seed

    @property
    def post(self) -> PostRef:
        return tuple.__new__(PostRef, self[:5])


class _LoneFields(NamedTuple):
    seed: int  # the post's fingerprint
    last_seen: float  # the post's time
    post: Post
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
        return self.post.text[:TEXT_CHARS]

    @property
    def first_seen(self) -> float:
        return self.last_seen

    @property
    def recent(self) -> tuple[Placed, ...]:
        return (self.placed(),)

    def placed(self) -> Placed:
        post = self.post
        return tuple.__new__(
            Placed,
            (
                post.uid,
                post.author,
                post.followers,
                post.ref,
                post.engagement,
                self.last_seen,
                self.rules,
                self.chars,
                0,
            ),
        )


@dataclass(slots=True)
class Cluster:
    """A cluster of near-identical texts that two posts or more joined, as shared by all rules."""

    seed: int
    text: str
    first_seen: float
    last_seen: float
    posts: int = 0
    members: list[int] = field(default_factory=list)
    # Its latest posts with the rules each matched, their length and fingerprint: a rule only looks
    # at a cluster once it holds as many posts as the rule needs accounts, and then counts its own
    # posts among these.
    # (A list trimmed from the front, at most the index's `recent` long: a deque with a maxlen
    # allocates a whole block, and costs more to build than the rest of the cluster.)
    recent: list[Placed] = field(default_factory=list)
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
        if ts > self.now:  # noqa: PLR1730 (cheaper than a call to max(), for every post)
            self.now = ts
        cutoff = self.now - self.window
        clusters = self.clusters
        # What `expire` would do, checked inline: it is called for every post and nearly always
        # finds the oldest cluster still live.
        if clusters and next(iter(clusters.values())).last_seen < cutoff:
            self._expire(cutoff)
        text = obs.post.text
        if ts < cutoff or ("RT @" in text and is_repost(text)):
            return None
        # The words' length with one space between them (0 rather than -1 for no words: too short
        # either way).
        chars = len(" ".join(obs.words))
        if chars < self.min_chars:
            return None
        fingerprint = obs.fingerprint
        mask = 0xFFFF  # `BandSplit.keys`, written out
        keys = (
            fingerprint & mask,
            0x10000 | ((fingerprint >> 16) & mask),
            0x20000 | ((fingerprint >> 32) & mask),
            0x30000 | ((fingerprint >> 48) & mask),
        )
        seed_of = self.seed_of
        buckets = self.buckets
        # The nearest seed: the cluster the very fingerprint was placed in, or else the nearest seed
        # of the members sharing a band with it (the first of equals, in band order).
        seed = seed_of.get(fingerprint)
        if seed is not None:
            found = clusters[seed]
            cluster = self._promote(found) if isinstance(found, Lone) else found
            distance = (fingerprint ^ seed).bit_count()
        else:
            held = tuple(map(buckets.get, keys))  # most posts share no band with any other
            distance = self.max_distance + 1
            if held != _NO_BUCKETS:
                for bucket in held:
                    if bucket is None:
                        continue
                    for member in (bucket,) if isinstance(bucket, int) else bucket:
                        candidate = seed_of[member]
                        d = (fingerprint ^ candidate).bit_count()
                        if d < distance:
                            seed, distance = candidate, d
            if seed is None:
                return self._open(tuple.__new__(Lone, (fingerprint, ts, obs.post, rules, chars, keys)), held)
            found = clusters[seed]
            cluster = self._promote(found) if isinstance(found, Lone) else found
            if len(cluster.members) < _MAX_MEMBERS:  # (not a member yet: it is not in `seed_of`)
                cluster.members.append(fingerprint)
                seed_of[fingerprint] = seed
                self._fill(fingerprint, keys, held)  # the buckets are as they were read above
        if ts > cluster.last_seen:  # noqa: PLR1730 (cheaper than max())
            cluster.last_seen = ts
        clusters.move_to_end(seed)
        cluster.posts += 1
        cluster.fingerprint = fingerprint
        cluster.chars = chars
        recent = cluster.recent
        post = obs.post
        # tuple.__new__: the NamedTuple's own __new__ is a Python function, and this is every post
        # that joins a cluster (about half of them).
        recent.append(
            tuple.__new__(
                Placed,
                (
                    post.uid,
                    post.author,
                    post.followers,
                    post.ref,
                    post.engagement,
                    ts,
                    rules,
                    chars,
                    distance,
                ),
            )
        )
        if len(recent) > self.recent:
            del recent[0]
        # None older than the window either (no rule would count them): a slow cluster lives as long
        # as a busy one, and should not hold more. (The post just placed is in the window.)
        while recent[0].ts < cutoff:
            del recent[0]
        return cluster

    def _open(self, lone: Lone, held: tuple[int | set[int] | None, ...]) -> Lone:
        """A post near no live seed opens a cluster of its own (`lone`; `held`: what its band buckets
        hold); over `max_clusters`, the least recently active cluster goes."""
        clusters = self.clusters
        buckets = self.buckets
        seed_of = self.seed_of
        fingerprint, keys = lone.seed, lone.keys
        clusters[fingerprint] = lone
        seed_of[fingerprint] = fingerprint
        if held == _NO_BUCKETS:
            k0, k1, k2, k3 = keys
            buckets[k0] = buckets[k1] = buckets[k2] = buckets[k3] = fingerprint
        else:
            self._fill(fingerprint, keys, held)
        if len(clusters) > self.max_clusters:
            evicted = clusters.popitem(last=False)[1]
            if type(evicted) is Lone:  # `_remove`, written out for the usual case
                gone = evicted.seed
                del seed_of[gone]
                k0, k1, k2, k3 = evicted.keys
                # Each of its buckets holds it, alone (nearly always) or in a set: popped, and put
                # back without it if others share it.
                pop = buckets.pop
                b0, b1, b2, b3 = pop(k0, None), pop(k1, None), pop(k2, None), pop(k3, None)
                if b0 != gone or b1 != gone or b2 != gone or b3 != gone:
                    self._put_back(gone, evicted.keys, (b0, b1, b2, b3))
            else:
                self._remove(evicted)
        return lone

    def _promote(self, lone: Lone) -> Cluster:
        """A second post joins a lone one: from now on it is a cluster like any other."""
        ts, seed = lone.last_seen, lone.seed
        recent = [lone.placed()]
        cluster = Cluster(seed, lone.text, ts, ts, 1, [seed], recent, seed, lone.chars)
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
        self._fill(fingerprint, keys, tuple(map(self.buckets.get, keys)))

    def _fill(self, fingerprint: int, keys: tuple[int, ...], held: tuple[int | set[int] | None, ...]) -> None:
        """File `fingerprint` under `keys`, whose buckets hold `held`."""
        buckets = self.buckets
        for key, bucket in zip(keys, held, strict=True):
            if bucket is None:
                buckets[key] = fingerprint
            elif isinstance(bucket, int):
                buckets[key] = {bucket, fingerprint}
            else:
                bucket.add(fingerprint)

    def _remove(self, cluster: NearDuplicates) -> None:
        """Take a cluster (already out of `clusters`) out of the buckets."""
        if isinstance(cluster, Lone):
            self._unindex(cluster.seed, cluster.keys)
        else:
            # (Band keys worked out again: a cluster goes far less often than a lone post, and a
            # tuple of four ints kept per member cost ~180 bytes.)
            keys_of = self.bands.keys
            for member in cluster.members:
                self._unindex(member, keys_of(member))

    def _unindex(self, member: int, keys: tuple[int, ...]) -> None:
        del self.seed_of[member]
        pop = self.buckets.pop
        held = tuple([pop(key, None) for key in keys])
        if held.count(member) != len(keys):  # not alone in all of them, as most are
            self._put_back(member, keys, held)

    def _put_back(
        self, member: int, keys: tuple[int, ...], popped: tuple[int | set[int] | None, ...]
    ) -> None:
        """Put back what the buckets under `keys` held (`popped`, taken out), without `member`."""
        buckets = self.buckets
        for key, held in zip(keys, popped, strict=True):
            if held is None or held == member:
                continue
            if isinstance(held, int):
                buckets[key] = held
            else:
                held.discard(member)
                buckets[key] = next(iter(held)) if len(held) == 1 else held

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
            cluster = Cluster(int(seed), str(text), float(first), float(last), int(posts))
            self.clusters[cluster.seed] = cluster
            for member in map(int, members):
                if member not in self.seed_of:
                    keys = self.bands.keys(member)
                    cluster.members.append(member)
                    self._index(member, cluster.seed, keys)
        self.now = max((c.last_seen for c in self.clusters.values()), default=-math.inf)
