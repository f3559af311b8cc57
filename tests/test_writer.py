"""The store writer: batching by size and age, retry without loss, back-pressure while failing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from harvester.errors import StoreError
from harvester.metrics import Metrics
from harvester.store import PostRecord, Store
from harvester.writer import BatchWriter
from tests.helpers import make_post


class FlakyStore:
    """Fails the first `failures` writes, then records what was committed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.commits: list[tuple[list[str], dict[str, str]]] = []
        self.attempted = asyncio.Event()

    async def write_batch(
        self, records: Sequence[PostRecord], cursors: Mapping[str, str], seen: Sequence[tuple[str, float]]
    ) -> int:
        self.attempted.set()
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        self.commits.append(([r.post.uid for r in records], dict(cursors)))
        return len(records)


def records(first: int, count: int) -> list[PostRecord]:
    return [PostRecord(make_post(n), (), None) for n in range(first, first + count)]


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def test_a_failing_store_is_retried_until_the_batch_commits_whole() -> None:
    store = FlakyStore(failures=3)
    metrics = Metrics()
    writer = BatchWriter(store, metrics, max_posts=10, max_delay=60, sleep=no_sleep)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    writer.add(records(0, 10), {"src": "9"}, [], 10)
    await asyncio.wait_for(writer.wait_idle(), 10)
    task.cancel()
    assert store.commits == [([f"test:{n}" for n in range(10)], {"src": "9"})]
    assert metrics.store_errors._value.get() == 3
    assert not writer.failing


async def test_back_pressure_while_the_store_is_failing() -> None:
    store = FlakyStore(failures=10**9)
    writer = BatchWriter(store, Metrics(), max_posts=5, max_delay=60, sleep=no_sleep)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run())
    writer.add(records(0, 5), {"src": "0"}, [], 5)
    await store.attempted.wait()  # the writer is now retrying its first batch
    for i in range(1, 8):
        writer.add(records(i * 5, 5), {"src": str(i)}, [], 5)
    room = asyncio.ensure_future(writer.wait_for_room())
    await asyncio.sleep(0)
    assert room.done()  # 35 pending: under the high-water mark of 8 batches of 5
    writer.add(records(40, 5), {"src": "8"}, [], 5)
    blocked = asyncio.ensure_future(writer.wait_for_room())
    await asyncio.sleep(0)
    assert not blocked.done()  # 40 pending: the processor must wait
    task.cancel()
    blocked.cancel()


async def test_partial_batches_commit_after_max_delay(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "h.db")
    writer = BatchWriter(store, Metrics(), max_posts=1000, max_delay=0.05, sleep=no_sleep)
    task = asyncio.create_task(writer.run())
    writer.add(records(0, 3), {"src": "2"}, [("test:0", 1.0)], 3)
    await asyncio.wait_for(writer.wait_idle(), 10)  # committed by age, not size
    task.cancel()
    assert await store.count_posts() == 3 and await store.load_cursors() == {"src": "2"}
    await store.close()
