"""A bounded queue with an explicit policy for when it is full, and a counter for every drop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class FullPolicy(StrEnum):
    BLOCK = "block"  # back-pressure: the producer waits (resumable sources lose nothing)
    DROP_NEWEST = "drop_newest"  # the item being offered is dropped
    DROP_OLDEST = "drop_oldest"  # the oldest queued item is dropped to make room


class BoundedQueue(Generic[T]):
    """asyncio.Queue with a capacity, a full policy, and `dropped` counting what the policy threw away.

    `on_drop` is called once per dropped item (for metrics and rate-limited logs).
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
        self._queue: asyncio.Queue[T] = asyncio.Queue(capacity)

    def qsize(self) -> int:
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()

    async def put(self, item: T) -> bool:
        """Offer `item`. Returns False if the policy dropped it (DROP_NEWEST on a full queue)."""
        if self.policy is FullPolicy.BLOCK:
            await self._queue.put(item)
            return True
        if self._queue.full():
            if self.policy is FullPolicy.DROP_NEWEST:
                self._drop(item)
                return False
            self._drop(self._queue.get_nowait())
            self._queue.task_done()
        self._queue.put_nowait(item)
        return True

    def _drop(self, item: T) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop(item)

    async def get(self) -> T:
        return await self._queue.get()

    def get_batch(self, first: T, limit: int) -> list[T]:
        """`first` plus whatever else is already queued, up to `limit` items, without waiting."""
        batch = [first]
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    def task_done(self, count: int = 1) -> None:
        for _ in range(count):
            self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()
