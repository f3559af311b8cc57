"""The dedup stage's memory: a bounded set of recently seen post uids with a time-to-live.

Sources overlap on purpose (a backfill after a reconnect, a rewind to a cursor after a crash), so
the same post can arrive twice. The set is bounded by count and age; it is persisted through the
store's `seen` table in the same transaction as the posts, and reloaded at start.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class SeenSet:
    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._seen: OrderedDict[str, float] = OrderedDict()
        # The `now` of the last age eviction: the pipeline passes one `now` for a whole batch, and
        # nothing can expire again until it moves (every entry added at it is younger than the TTL).
        self._evicted_at = float("nan")

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, uid: object) -> bool:
        return uid in self._seen

    def add_if_new(self, uid: str, now: float) -> bool:
        """Record `uid`; return False if it was already seen (and not expired)."""
        seen_at = self._seen.get(uid)
        if seen_at is not None and now - seen_at <= self.ttl:
            return False
        if seen_at is not None:
            del self._seen[uid]
        self._seen[uid] = now
        self._evict(now)
        return True

    def load(self, items: Iterable[tuple[str, float]]) -> None:
        """Reload from the store, oldest first."""
        self._evicted_at = float("nan")  # what is loaded may be old: the next add checks ages again
        for uid, seen_at in items:
            self._seen[uid] = seen_at
            self._seen.move_to_end(uid)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def _evict(self, now: float) -> None:
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        if now == self._evicted_at:
            return
        self._evicted_at = now
        horizon = now - self.ttl
        while self._seen:
            oldest_uid, oldest_at = next(iter(self._seen.items()))
            if oldest_at >= horizon:
                break
            del self._seen[oldest_uid]
