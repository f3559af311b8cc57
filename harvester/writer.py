"""The store stage: posts, cursors and seen-uids batched into one transaction each.

A batch is committed when it holds `max_posts` posts or its oldest item is `max_delay` old, whichever
comes first. Each source's cursor rides in the same transaction as the posts it covers, so after a
kill -9 a source resumes exactly where the committed posts end. A failed write is retried with backoff
and never dropped; while it is failing, the pending buffer fills up and pushes back on the processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import structlog

from harvester.clock import Sleep
from harvester.errors import StoreError
from harvester.metrics import Metrics
from harvester.store import PostRecord, Store

log = structlog.get_logger(__name__)


@dataclass
class _Batch:
    records: list[PostRecord] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, float]] = field(default_factory=list)
    items: int = 0
    started: float = 0.0


class BatchWriter:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        max_posts: int,
        max_delay: float,
        sleep: Sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.max_posts = max_posts
        self.max_delay = max_delay
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.high_water = max_posts * 8
        self.committed_batches = 0
        self.failing = False
        self._pending = _Batch()
        self._has_data = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- called by the processor, once per inbox batch -------------------------------------------
    def add(
        self,
        records: list[PostRecord],
        cursors: dict[str, str],
        seen: list[tuple[str, float]],
        items: int,
    ) -> None:
        """Queue a processed inbox batch: its records, the newest cursor per source, the new uids."""
        if items == 0:
            return
        batch = self._pending
        if batch.items == 0:
            batch.started = time.monotonic()
        batch.items += items
        batch.records.extend(records)
        batch.cursors.update(cursors)
        batch.seen.extend(seen)
        self._idle.clear()
        self._has_data.set()
        if batch.items >= self.max_posts:
            self._full.set()
        if batch.items >= self.high_water:
            self._room.clear()

    async def wait_for_room(self) -> None:
        """Back-pressure: wait while the pending buffer is over its high-water mark (store slow, failing)."""
        await self._room.wait()

    async def wait_idle(self) -> None:
        """Wait until everything added so far is committed."""
        await self._idle.wait()

    # -- the task ---------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await self._has_data.wait()
            remaining = self.max_delay - (time.monotonic() - self._pending.started)
            if remaining > 0 and not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout=remaining)
            await self.flush()

    async def flush(self) -> None:
        """Commit what is pending now (retrying until it succeeds)."""
        batch, self._pending = self._pending, _Batch()
        self._has_data.clear()
        self._full.clear()
        self._room.set()
        if batch.items:
            await self._commit(batch)
        if self._pending.items == 0:
            self._idle.set()

    async def _commit(self, batch: _Batch) -> None:
        attempt = 0
        while True:
            try:
                stored = await self.store.write_batch(batch.records, batch.cursors, batch.seen)
            except StoreError as exc:
                attempt += 1
                self.failing = True
                self.metrics.store_errors.inc()
                delay = min(30.0, 0.1 * 2 ** min(attempt, 10)) * (0.5 + self.rng.random() / 2)
                if attempt == 1 or attempt % 10 == 0:
                    log.warning(
                        "store write failed, retrying",
                        error=str(exc),
                        attempt=attempt,
                        posts=len(batch.records),
                    )
                await self.sleep(delay)
                continue
            if self.failing:
                log.info("store writes recovered", attempts=attempt + 1)
            self.failing = False
            self.committed_batches += 1
            self.metrics.posts_stored.inc(stored)
            return
