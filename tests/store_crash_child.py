"""Child process for the store's kill -9 test (run by tests/test_store.py, not collected by pytest).

Usage: python store_crash_child.py DB_PATH BATCH_SIZE

Behaves like a collector: resumes from the stored "crash" cursor (rewinding a few posts, as a source
that re-sends an overlap would), then writes batches forever. A batch holds posts uid "crash:<n>" for
consecutive n and moves the cursor to the batch's last n in the same `write_batch`.

It reports on stdout, one line each:
- `sql <statement start>` when SQLite starts executing a statement (from a trace callback), so the
  parent can aim its SIGKILL at a chosen step of the write cycle instead of always hitting the same
  spot just after a commit;
- `committed <n>` once the batch ending with post n is committed.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from harvester.models import Post
from harvester.store import PostRecord, Store

MAX_BATCHES = 100_000  # a bound, in case the parent dies without killing us
REWIND = 3  # re-send this many already stored posts after a restart: uid uniqueness absorbs them


def report(line: str) -> None:
    # One write per line: the trace callback runs in aiosqlite's worker thread.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def trace(statement: str) -> None:
    report("sql " + " ".join(statement.split()[:3]))


def record(n: int) -> PostRecord:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    post = Post(
        uid=f"crash:{n}",
        source="crash",
        native_id=str(n),
        author="child",
        text=f"post number {n}",
        created_at=when,
        received_at=when,
    )
    return PostRecord(post=post, rules=("crash-rule",), sentiment=None)


async def main(path: Path, batch_size: int) -> None:
    store = await Store.open(path)
    try:
        cursor = (await store.load_cursors()).get("crash")
        n = 0 if cursor is None else max(0, int(cursor) + 1 - REWIND)
        await store._db.set_trace_callback(trace)
        for _ in range(MAX_BATCHES):
            records = [record(i) for i in range(n, n + batch_size)]
            last = n + batch_size - 1
            seen = [(r.post.uid, 1_700_000_000.0 + i) for i, r in enumerate(records, start=n)]
            await store.write_batch(records, {"crash": str(last)}, seen)
            report(f"committed {last}")
            n = last + 1
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
