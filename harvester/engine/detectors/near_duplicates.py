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
handful of list and dict lookups however many clusters are live (`Buckets`).

A cluster expires `window` seconds after its last post, and at most `max_clusters` are kept (the
least recently active go first); a cluster keeps at most `recent` of its latest posts, none older
than the window, as small flat records (`Placed`), and is found under at most `_MAX_MEMBERS`
fingerprints: memory is bounded by counts whatever the traffic. Pure reposts ("RT @user: ...") and
texts shorter than `min_chars` are not placed: the first are one post going viral (the viral
detector's business), the second too alike by chance ("gm", "lol").

Nearly every post stays alone, and most of the index's work was for them: a cluster object with its
deque of recent posts built for each, then evicted unread. So a post that opens a cluster is kept as
a `Lone` record (a tuple, with the post as its cluster would keep it) until a second post joins it;
only then is it promoted to a `Cluster`, with the first post as the oldest of its recent ones, so a
rule that starts counting then still counts it. Both answer what a rule reads of a cluster (`seed`,
`posts`, `text`, `recent`, `fingerprint`, `chars`): `NearDuplicates` is either.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeAlias

from harvester.engine.detectors.base import encode_json
from harvester.engine.simhash import BandSplit, is_repost

if TYPE_CHECKING:
    from harvester.engine.detectors.base import Observation
    from harvester.models import Post

_MAX_MEMBERS = 16  # distinct fingerprints a cluster is found under
TEXT_CHARS = 280  # of the representative text kept for the alert
_ROWS_AT_ONCE = 256  # clusters encoded at once by `snapshot_json`


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
    first: Placed  # the post, as a cluster's recent posts keep theirs
    text: str  # the post's text, at most TEXT_CHARS of it


class Lone(_LoneFields):
    """A cluster of one post, kept as the placed post itself (most clusters never get a second):
    what its cluster would keep of it once promoted, not the whole `Post` (the index holds up to
    `max_clusters` of these at all times). The fields read for every post (`seed`, `last_seen`,
    `posts`) are plain tuple fields."""

    __slots__ = ()
    posts: ClassVar[int] = 1

    @property
    def fingerprint(self) -> int:
        return self.seed

    @property
    def chars(self) -> int:
        return self.first.chars

    @property
    def first_seen(self) -> float:
        return self.last_seen

    @property
    def recent(self) -> tuple[Placed, ...]:
        return (self.first,)


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


Filed: TypeAlias = "int | tuple[int, ...] | set[int]"
Held: TypeAlias = "Filed | None"
_MAX_TUPLE = 16  # fingerprints a slot holds as a tuple (rebuilt on each change); more as a set
_WIDTH = BandSplit.WIDTH
_MASK = (1 << _WIDTH) - 1


class Buckets:
    """Band value -> the member fingerprint(s) filed under it: one list of 65,536 slots per band.

    A slot holds nothing (None), one fingerprint as a bare int (most occupied slots), a few as a tuple
    or many as a set: a set costs several times a small tuple to build, and a slot that holds more
    than one nearly always holds two to five. Lists rather than a dict keyed
    by band: a post reads four slots and a lone post writes and clears four, and a list slot is one
    memory access where a dict of 20,000 int keys costs a hash probe, its entry and the key object
    (cache misses, all three, once the index is big). The four lists are 2 MB, allocated once."""

    __slots__ = ("bands",)

    def __init__(self) -> None:
        self.bands: tuple[list[Held], ...] = tuple([None] * (1 << _WIDTH) for _ in range(BandSplit.BANDS))

    def __len__(self) -> int:
        """Occupied slots (a scan: for tests and tools, not the hot path)."""
        return sum(len(band) - band.count(None) for band in self.bands)

    def clear(self) -> None:
        for band in self.bands:
            band[:] = [None] * len(band)


def _lone(fingerprint: int, ts: float, post: Post, rules: tuple[str, ...], chars: int) -> Lone:
    # tuple.__new__: the NamedTuples' own __new__ are Python functions, and this is most posts.
    first = tuple.__new__(
        Placed, (post.uid, post.author, post.followers, post.ref, post.engagement, ts, rules, chars, 0)
    )
    return tuple.__new__(Lone, (fingerprint, ts, first, post.text[:TEXT_CHARS]))


def _with(held: Filed, fingerprint: int) -> Filed:
    """What a slot holding `held` holds once `fingerprint` is filed in it too."""
    if isinstance(held, int):
        return (held, fingerprint)
    if isinstance(held, tuple):
        return (*held, fingerprint) if len(held) < _MAX_TUPLE else {*held, fingerprint}
    held.add(fingerprint)
    return held


def _without(held: tuple[int, ...] | set[int], member: int) -> Filed:
    """What a slot holding several fingerprints holds once `member` is taken out."""
    if isinstance(held, tuple):
        rest = tuple([m for m in held if m != member])
        return rest[0] if len(rest) == 1 else rest
    held.discard(member)
    return next(iter(held)) if len(held) == 1 else held


def band_values(fingerprint: int) -> tuple[int, int, int, int]:
    """The fingerprint's four 16-bit bands: its slots in `Buckets` (untagged `BandSplit.keys`)."""
    return (
        fingerprint & _MASK,
        (fingerprint >> 16) & _MASK,
        (fingerprint >> 32) & _MASK,
        (fingerprint >> 48) & _MASK,
    )


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
        self.buckets = Buckets()  # band value -> member fingerprint(s)
        self._slots = self.buckets.bands  # read for every post
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
        # (The first key, then its value: cheaper than an iterator over the values.)
        if clusters and clusters[next(iter(clusters))].last_seen < cutoff:
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
        b0, b1, b2, b3 = self._slots
        # `band_values`, written out
        k0 = fingerprint & 0xFFFF
        k1 = (fingerprint >> 16) & 0xFFFF
        k2 = (fingerprint >> 32) & 0xFFFF
        k3 = (fingerprint >> 48) & 0xFFFF
        h0, h1, h2, h3 = b0[k0], b1[k1], b2[k2], b3[k3]
        seed_of = self.seed_of
        if h0 is None and h1 is None and h2 is None and h3 is None:
            # No member shares a band with it (the fingerprint itself is not one either): alone.
            lone = _lone(fingerprint, ts, obs.post, rules, chars)
            clusters[fingerprint] = lone
            seed_of[fingerprint] = fingerprint
            b0[k0] = b1[k1] = b2[k2] = b3[k3] = fingerprint
            if len(clusters) > self.max_clusters:
                self._evict()
            return lone
        held = (h0, h1, h2, h3)
        # The nearest seed: the cluster the very fingerprint was placed in, or else the nearest seed
        # of the members sharing a band with it (the first of equals, in band order).
        seed = seed_of.get(fingerprint)
        if seed is not None:
            found = clusters[seed]
            cluster = self._promote(found) if isinstance(found, Lone) else found
            distance = (fingerprint ^ seed).bit_count()
        else:
            distance = self.max_distance + 1
            for bucket in held:
                if bucket is None:
                    continue
                for member in (bucket,) if isinstance(bucket, int) else bucket:
                    candidate = seed_of[member]
                    d = (fingerprint ^ candidate).bit_count()
                    if d < distance:
                        seed, distance = candidate, d
            if seed is None:
                lone = _lone(fingerprint, ts, obs.post, rules, chars)
                clusters[fingerprint] = lone
                seed_of[fingerprint] = fingerprint
                self._fill(fingerprint, (k0, k1, k2, k3), held)
                if len(clusters) > self.max_clusters:
                    self._evict()
                return lone
            found = clusters[seed]
            cluster = self._promote(found) if isinstance(found, Lone) else found
            if len(cluster.members) < _MAX_MEMBERS:  # (not a member yet: it is not in `seed_of`)
                cluster.members.append(fingerprint)
                seed_of[fingerprint] = seed
                self._fill(fingerprint, (k0, k1, k2, k3), held)  # the slots are as read above
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

    def _evict(self) -> None:
        """Over `max_clusters`: the least recently active cluster goes (nearly always a lone post)."""
        evicted = self.clusters.popitem(last=False)[1]
        if not isinstance(evicted, Lone):
            self._remove(evicted)
            return
        # `_unindex`, written out for the usual case: alone in all four of its slots
        gone = evicted.seed
        del self.seed_of[gone]
        b0, b1, b2, b3 = self._slots
        k0 = gone & 0xFFFF
        k1 = (gone >> 16) & 0xFFFF
        k2 = (gone >> 32) & 0xFFFF
        k3 = (gone >> 48) & 0xFFFF
        if b0[k0] == gone and b1[k1] == gone and b2[k2] == gone and b3[k3] == gone:
            b0[k0] = b1[k1] = b2[k2] = b3[k3] = None
        else:
            self._take_out(gone)

    def _promote(self, lone: Lone) -> Cluster:
        """A second post joins a lone one: from now on it is a cluster like any other."""
        ts, seed, first = lone.last_seen, lone.seed, lone.first
        cluster = Cluster(seed, lone.text, ts, ts, 1, [seed], [first], seed, first.chars)
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

    def _index(self, fingerprint: int, seed: int) -> None:
        self.seed_of[fingerprint] = seed
        values = band_values(fingerprint)
        self._fill(fingerprint, values, tuple(band[k] for band, k in zip(self._slots, values, strict=True)))

    def _fill(self, fingerprint: int, values: tuple[int, ...], held: tuple[Held, ...]) -> None:
        """File `fingerprint` in its slots (`values`), which hold `held`."""
        b0, b1, b2, b3 = self._slots
        k0, k1, k2, k3 = values
        h0, h1, h2, h3 = held
        b0[k0] = fingerprint if h0 is None else _with(h0, fingerprint)
        b1[k1] = fingerprint if h1 is None else _with(h1, fingerprint)
        b2[k2] = fingerprint if h2 is None else _with(h2, fingerprint)
        b3[k3] = fingerprint if h3 is None else _with(h3, fingerprint)

    def _remove(self, cluster: NearDuplicates) -> None:
        """Take a cluster (already out of `clusters`) out of the slots and `seed_of`."""
        if isinstance(cluster, Lone):
            del self.seed_of[cluster.seed]
            self._take_out(cluster.seed)
        else:
            for member in cluster.members:
                del self.seed_of[member]
                self._take_out(member)

    def _take_out(self, member: int) -> None:
        for band, key in zip(self._slots, band_values(member), strict=True):
            held = band[key]
            if held is None or isinstance(held, int):
                if held == member:
                    band[key] = None
            else:
                band[key] = _without(held, member)

    # -- persistence -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Clusters of two posts or more (the one-post clusters, nearly all of them, are not worth a
        restart), so that a campaign's posts after a restart join the cluster they joined before."""
        return {"clusters": list(self._rows())}

    def snapshot_json(self) -> str:
        """`snapshot()` as JSON text, the same as `json.dumps(snapshot(), separators=(",", ":"))`,
        encoded `_ROWS_AT_ONCE` clusters at a time: encoded whole, the rows' texts, times and
        fingerprints are a few megabytes of small strings at once, whose arenas Python keeps."""
        rows = self._rows()
        parts = []
        while batch := list(islice(rows, _ROWS_AT_ONCE)):
            parts.append(encode_json(batch)[1:-1])
        return '{"clusters":[' + ",".join(parts) + "]}"

    def _rows(self) -> Iterator[list[Any]]:
        return (
            [c.seed, c.text, c.first_seen, c.last_seen, c.posts, c.members]
            for c in self.clusters.values()
            if isinstance(c, Cluster) and c.posts >= 2
        )

    def restore(self, state: dict[str, Any]) -> None:
        self.clusters.clear()
        self.buckets.clear()
        self.seed_of.clear()
        for seed, text, first, last, posts, members in state.get("clusters", []):
            cluster = Cluster(int(seed), str(text), float(first), float(last), int(posts))
            self.clusters[cluster.seed] = cluster
            for member in map(int, members):
                if member not in self.seed_of:
                    cluster.members.append(member)
                    self._index(member, cluster.seed)
        self.now = max((c.last_seen for c in self.clusters.values()), default=-math.inf)
