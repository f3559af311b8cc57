"""A bounded queue with an explicit policy for when it is full, and a counter for every drop."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class FullPolicy(StrEnum):
    BLOCK = "block"  # back-pressure: the producer waits (resumable sources lose nothing)
    DROP_NEWEST = "drop_newest"  # the item being offered is dropped
    DROP_OLDEST = "drop_oldest"  # the oldest queued item is dropped to make room


class BoundedQueue(Generic[T]):
    """A FIFO with a capacity, a full policy, and `dropped` counting what the policy threw away.

    `on_drop` is called once per dropped item (for metrics and rate-limited logs). It behaves like
    asyncio.Queue (waiters served in order, `task_done` / `join`), but every post of the daemon
    passes through it, so the common case is short: a put with room is an append, a batch is taken
    in one go, and `task_done(n)` is one subtraction rather than n calls.
    """

    def __init__(
        self,
        capacity: int,
        policy: FullPolicy = FullPolicy.BLOCK,
        on_drop: Callable[[T], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.policy = policy
        self.dropped = 0
        self._on_drop = on_drop
        self._items: deque[T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._unfinished = 0
        self._finished = asyncio.Event()
        self._finished.set()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    async def put(self, item: T) -> bool:
        """Offer `item`. Returns False if the policy dropped it (DROP_NEWEST on a full queue)."""
        items = self._items
        if len(items) >= self.capacity:
            if self.policy is FullPolicy.BLOCK:
                while len(items) >= self.capacity:
                    await self._wait(self._putters, lambda: len(items) < self.capacity)
            elif self.policy is FullPolicy.DROP_NEWEST:
                self._drop(item)
                return False
            else:
                self._drop(items.popleft())
                self.task_done()
        items.append(item)
        self._unfinished += 1
        if self._unfinished == 1:
            self._finished.clear()
        if self._getters:
            _wake(self._getters, 1)
        return True

    def _drop(self, item: T) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop(item)

    async def get(self) -> T:
        items = self._items
        while not items:
            await self._wait(self._getters, lambda: bool(items))
        item = items.popleft()
        if self._putters:
            _wake(self._putters, 1)
        return item

    def get_batch(self, first: T, limit: int) -> list[T]:
        """`first` plus whatever else is already queued, up to `limit` items, without waiting."""
        items = self._items
        take = min(limit - 1, len(items))
        batch = [first]
        if take > 0:
            popleft = items.popleft
            batch += [popleft() for _ in range(take)]
            if self._putters:
                _wake(self._putters, take)
        return batch

    def task_done(self, count: int = 1) -> None:
        if count > self._unfinished:
            raise ValueError("task_done() called too many times")
        self._unfinished -= count
        if self._unfinished == 0:
            self._finished.set()

    async def join(self) -> None:
        await self._finished.wait()

    async def _wait(self, waiters: deque[asyncio.Future[None]], ready: Callable[[], bool]) -> None:
        """Wait for a wake-up; if cancelled after being woken, pass the wake-up on (as asyncio.Queue
        does), so a cancelled producer or consumer never strands the next one."""
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            waiter.cancel()
            with contextlib.suppress(ValueError):  # already taken off by a wake-up
                waiters.remove(waiter)
            if ready() and not waiter.cancelled():
                _wake(waiters, 1)
            raise


def _wake(waiters: deque[asyncio.Future[None]], count: int) -> None:
    """Wake up to `count` waiters, oldest first, skipping any already cancelled."""
    while count and waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            count -= 1
