"""Which posts the `reddit` source re-fetches so their score and comment growth become observations.

A post or comment that matches one of the daemon's rules is followed for `duration` seconds from when
the source first emitted it and re-fetched every `interval` seconds (up to 100 per request through
`/api/info`, Reddit's limit). The pipeline sees the re-emitted uid as a re-observation and hands the new
counts to the viral detector.

Memory is bounded: at most `capacity` items are followed; when full, the one followed longest (the
next to expire anyway) makes room. An item Reddit no longer returns (deleted, removed) is dropped.
Nothing here survives a restart: after one, only posts matched from then on are followed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

# Reddit's /api/info takes at most 100 fullnames per request.
MAX_PER_REQUEST = 100


class EngagementTracker:
    def __init__(self, *, interval: float, duration: float, capacity: int) -> None:
        self.interval = interval
        self.duration = duration
        self.capacity = capacity
        # fullname -> [first emitted at, next re-fetch at]; insertion order is first-emitted order.
        self._items: OrderedDict[str, list[float]] = OrderedDict()
        self.evicted = 0
        self.expired = 0
        self.vanished = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, fullname: object) -> bool:
        return fullname in self._items

    def track(self, fullname: str, now: float) -> bool:
        """Start following `fullname`; False if it is already followed."""
        if fullname in self._items:
            return False
        while len(self._items) >= self.capacity:
            self._items.popitem(last=False)
            self.evicted += 1
        self._items[fullname] = [now, now + self.interval]
        return True

    def _expire(self, now: float) -> None:
        horizon = now - self.duration
        items = self._items
        while items:
            first = next(iter(items.values()))
            if first[0] > horizon:
                break
            items.popitem(last=False)
            self.expired += 1

    def next_due(self, now: float) -> float | None:
        """When the next re-fetch is due (may be in the past), or None if nothing is followed."""
        self._expire(now)
        if not self._items:
            return None
        return min(entry[1] for entry in self._items.values())

    def due(self, now: float, limit: int = MAX_PER_REQUEST) -> list[str]:
        """Up to `limit` fullnames whose re-fetch is due, most overdue first."""
        self._expire(now)
        ready = [(entry[1], name) for name, entry in self._items.items() if entry[1] <= now]
        ready.sort()
        return [name for _, name in ready[:limit]]

    def refreshed(self, asked: Iterable[str], returned: Iterable[str], now: float) -> None:
        """After a re-fetch: reschedule what came back, forget what Reddit no longer has."""
        back = set(returned)
        for name in asked:
            entry = self._items.get(name)
            if entry is None:
                continue
            if name in back:
                entry[1] = now + self.interval
            else:
                del self._items[name]
                self.vanished += 1

    def postpone(self, asked: Iterable[str], now: float) -> None:
        """A re-fetch failed: try these again one interval later (they still expire on time)."""
        for name in asked:
            entry = self._items.get(name)
            if entry is not None:
                entry[1] = now + self.interval
