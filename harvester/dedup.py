"""The dedup stage's memory: a bounded set of recently seen post uids with a time-to-live.

Sources overlap on purpose (a backfill after a reconnect, a rewind to a cursor after a crash), so
the same post can arrive twice. The set is bounded by count and age; it is persisted through the
store's `seen` table in the same transaction as the posts, and reloaded at start.

Memory: a plain `set` of uids plus two deques (uids and times, in the order they were added), not an
`OrderedDict`. Under a steady churn (one uid in, the oldest out, for every post) an OrderedDict's
hash table fills with deleted slots and is rebuilt every few hundred thousand posts at three times
the live count: for the default 200,000 uids that is a 2^20-slot table (~15 MB) plus its 8 MB node
index and 32 B per node, ~29 MB, and each rebuild allocates and frees those blocks again, which left
glibc's heap 33 MB larger over 3M posts with no more uids held (see the soak notes). A set rebuilt
under churn keeps the size it had while filling (2^19 slots, 8 MB for 200,000 uids), and the deques
grow and shrink by small fixed blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class SeenSet:
    """Uids added in the last `ttl` seconds, at most `capacity` of them (the oldest go first).

    Expiry works from the oldest entry forward: the times are those the pipeline passes (its wall
    clock), which only move forward, so the expired entries are always the oldest ones. If the
    clock steps back, an entry behind a younger one waits for it before it can age out, i.e. stays a
    duplicate up to the size of the step longer.
    """

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._members: set[str] = set()
        # The members in the order they were added, and the time each was added at: always exactly
        # the members, once each (`add_if_new` only adds a uid that is not a member, `load` too).
        self._uids: deque[str] = deque()
        self._times: deque[float] = deque()
        # The `now` of the last age eviction: the pipeline passes one `now` for a whole batch, and
        # nothing can expire again until it moves (every entry added at it is younger than the TTL).
        self._evicted_at = float("nan")

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, uid: object) -> bool:
        return uid in self._members

    def add_if_new(self, uid: str, now: float) -> bool:
        """Record `uid`; return False if it was already seen (and not expired)."""
        if now != self._evicted_at:  # always true after a load (NaN)
            self._age_out(now)
        members = self._members
        if uid in members:
            return False
        members.add(uid)
        self._uids.append(uid)
        self._times.append(now)
        if len(members) > self.capacity:
            members.discard(self._uids.popleft())
            self._times.popleft()
        return True

    def load(self, items: Iterable[tuple[str, float]]) -> None:
        """Reload from the store, oldest first. A uid that is already a member keeps its place."""
        self._evicted_at = float("nan")  # what is loaded may be old: the next add checks ages again
        members, uids, times = self._members, self._uids, self._times
        for uid, seen_at in items:
            if uid not in members:
                members.add(uid)
                uids.append(uid)
                times.append(seen_at)
        while len(members) > self.capacity:
            members.discard(uids.popleft())
            times.popleft()

    def _age_out(self, now: float) -> None:
        self._evicted_at = now
        ttl, members, uids, times = self.ttl, self._members, self._uids, self._times
        # The same test as a duplicate check would make: an entry goes once `now - seen_at > ttl`.
        while times and now - times[0] > ttl:
            times.popleft()
            members.discard(uids.popleft())
