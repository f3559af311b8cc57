"""Multi-row INSERT statements: a batch of rows in a handful of statements instead of one per row.

`executemany` steps SQLite once per row, and the sqlite3 module releases the GIL around every step.
In the daemon the event loop's thread is busy, so the store's thread then waits to get the GIL back
after each row: a batch of 500 posts cost about a thousand GIL hand-overs, paid by both threads. One
statement carrying many rows is stepped once. Its shapes are fixed (full chunks, then powers of two
for the rest), so the sqlite3 module's statement cache reuses a few prepared statements.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

# Rows per full chunk: beyond a few hundred, a longer statement saves nothing measurable.
CHUNK_ROWS = 256


def _variable_limit() -> int:
    """How many `?` one statement may hold in the SQLite library in use (32,766 since 3.32, often
    more as compiled by distributions; 999 before)."""
    with sqlite3.connect(":memory:") as db:
        return db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


_VARIABLE_LIMIT = _variable_limit()


class MultiRowInsert:
    """`head` + "(?, ...), (?, ...)" + `tail` for `columns`-wide rows, run in chunks."""

    def __init__(self, head: str, columns: int, tail: str = "") -> None:
        self.head = head
        self.columns = columns
        self.tail = tail
        self.chunk = max(1, min(CHUNK_ROWS, _VARIABLE_LIMIT // columns))
        self._one = "(" + ", ".join("?" * columns) + ")"
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        text = self._sql.get(rows)
        if text is None:
            text = self._sql[rows] = self.head + ", ".join([self._one] * rows) + self.tail
        return text

    def shapes(self, count: int) -> list[int]:
        """The statement sizes that cover `count` rows: full chunks, then the rest in powers of two."""
        sizes = [self.chunk] * (count // self.chunk)
        rest = count % self.chunk
        while rest:
            size = 1 << (rest.bit_length() - 1)
            sizes.append(size)
            rest -= size
        return sizes

    async def run(self, db: aiosqlite.Connection, rows: Sequence[Sequence[Any]]) -> int:
        """Insert `rows` in order; return how many the statements inserted (`changes()`, so rows
        skipped by an ON CONFLICT clause and rows written by triggers are not counted)."""
        inserted = 0
        start = 0
        for size in self.shapes(len(rows)):
            params = list(itertools.chain.from_iterable(rows[start : start + size]))
            # One parameter set: one step. (Through executemany so a statement is run the same way
            # whatever its size; tests that intercept the store's inserts hook that one method.)
            cursor = await db.executemany(self.sql(size), (params,))
            inserted += cursor.rowcount
            start += size
        return inserted
