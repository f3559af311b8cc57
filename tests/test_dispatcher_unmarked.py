"""A send that succeeds and a store that then refuses `mark_delivered` (locked, full): the alert must
not go out a second time, and its mark must reach the store once the store takes writes again."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from harvester.alerts.dispatcher import Dispatcher
from harvester.alerts.sinks.webhook import WebhookSink, WebhookSinkConfig
from harvester.clock import ManualClock
from harvester.config.schema import AlertsConfig
from harvester.errors import StoreError
from harvester.metrics import Metrics
from harvester.models import Alert
from harvester.store import Store
from tests.alert_samples import make_signal
from tests.fake_sink_servers import FakeHttpServer, Recorded
from tests.helpers import T0, FakeSleep

# The store's writes give up on a lock this fast, so a refused mark costs the test little time.
BUSY_TIMEOUT = 0.2


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "h.db", busy_timeout=BUSY_TIMEOUT)
    yield opened
    await opened.close()


@pytest.fixture
async def receiver() -> AsyncIterator[FakeHttpServer]:
    server = await FakeHttpServer().start()
    yield server
    await server.close()


@pytest.fixture
async def hook(receiver: FakeHttpServer) -> AsyncIterator[WebhookSink]:
    sink = WebhookSink(WebhookSinkConfig(type="webhook", name="hook", url=f"{receiver.url}/in"))
    await sink.start()
    yield sink
    await sink.close()


def dispatcher_for(store: Store, hook: WebhookSink, clock: ManualClock, sleep: Any = None) -> Dispatcher:
    return Dispatcher(
        store=store,
        sinks={"hook": hook},
        config=AlertsConfig(group_wait=0.0, poll_interval=2.0),
        clock=clock,
        sleep=sleep or FakeSleep(clock),
        rng=random.Random(1),
        metrics=Metrics(),
    )


async def queue_alert(store: Store, n: int) -> str:
    signal = make_signal(n)
    alert = Alert(Alert.make_key(signal.id, "hook"), "hook", signal, signal.at)
    await store.save_signal_and_alerts(signal, [alert], T0.timestamp())
    return alert.key


def outbox_row(path: Path, key: str) -> tuple[str, float | None]:
    """Read with a connection of its own: in WAL mode a reader is not blocked by the lock holder."""
    with sqlite3.connect(path) as conn:
        status, delivered_at = conn.execute(
            "SELECT status, delivered_at FROM outbox WHERE key = ?", (key,)
        ).fetchone()
    return str(status), delivered_at


async def test_a_mark_refused_by_a_locked_database_is_recorded_later_and_never_resent(
    store: Store, receiver: FakeHttpServer, hook: WebhookSink, clock: ManualClock
) -> None:
    key = await queue_alert(store, 1)
    locker = sqlite3.connect(store.path, timeout=0, isolation_level=None)

    def lock_then_accept(_request: Recorded) -> web.Response:
        # Another connection takes the write lock while the alert is on the wire: the send succeeds,
        # the store refuses the mark that follows. timeout=0: the store is idle now, so the lock is
        # free, and this runs on the event loop, which must never wait on it.
        locker.execute("BEGIN EXCLUSIVE")
        return web.json_response({"ok": True})

    receiver.ok = lock_then_accept
    dispatcher = dispatcher_for(store, hook, clock)
    try:
        assert await dispatcher.deliver_due() == 1
        assert [r.key for r in receiver.requests] == [key]
        assert outbox_row(store.path, key) == ("pending", None)  # the lock really refused the mark
        assert list(dispatcher.unmarked) == [key]

        receiver.ok = lambda _request: web.json_response({"ok": True})
        clock.advance(60)  # well past any poll: the row is pending and due, as the store sees it
        assert await dispatcher.deliver_due() == 0  # still locked: the mark fails again, no re-send
        assert len(receiver.requests) == 1 and list(dispatcher.unmarked) == [key]
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    assert await dispatcher.deliver_due() == 0  # the lock is gone: the mark goes in, nothing is sent
    assert dispatcher.unmarked == {}
    status, delivered_at = outbox_row(store.path, key)
    assert status == "delivered" and delivered_at == T0.timestamp()  # the time of the send, not of the mark
    assert len(receiver.requests) == 1 and dispatcher.delivered == 1
    # And an alert raised after that goes out as usual.
    second = await queue_alert(store, 2)
    assert await dispatcher.deliver_due() == 1
    assert [r.key for r in receiver.requests] == [key, second]
    assert outbox_row(store.path, second)[0] == "delivered"


class RefusingMarks:
    """Wraps the real store; `mark_delivered` fails like a full disk (at once) while `refuse` is set."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.refuse = True
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def mark_delivered(self, key: str, now: float) -> None:
        if self.refuse:
            self.refused += 1
            raise StoreError("store: mark_delivered failed: database or disk is full")
        await self._store.mark_delivered(key, now)


class CountingSleep(FakeSleep):
    """FakeSleep that sets `reached` once it has been called `calls_wanted` times."""

    def __init__(self, clock: ManualClock, calls_wanted: int) -> None:
        super().__init__(clock)
        self.calls_wanted = calls_wanted
        self.reached = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        await super().__call__(seconds)
        if len(self.calls) >= self.calls_wanted:
            self.reached.set()


async def run_until(dispatcher: Dispatcher, sleep: CountingSleep, calls: int) -> None:
    sleep.calls_wanted, sleep.reached = calls, asyncio.Event()
    task = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(20):
            await sleep.reached.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_run_loop_retries_a_refused_mark_at_the_poll_interval_without_resending(
    store: Store, receiver: FakeHttpServer, hook: WebhookSink, clock: ManualClock
) -> None:
    key = await queue_alert(store, 1)
    refusing = RefusingMarks(store)
    sleep = CountingSleep(clock, 0)
    dispatcher = dispatcher_for(refusing, hook, clock, sleep)  # type: ignore[arg-type]

    await run_until(dispatcher, sleep, 5)
    assert [r.key for r in receiver.requests] == [key]  # five polls, one send
    assert refusing.refused >= 5  # the mark was tried again at every poll
    # The row is pending and due in the past: the loop waits a poll interval, it does not spin.
    assert sleep.calls == [2.0] * len(sleep.calls)
    assert outbox_row(store.path, key) == ("pending", None)

    refusing.refuse = False  # space is back
    await run_until(dispatcher, sleep, len(sleep.calls) + 2)
    assert outbox_row(store.path, key)[0] == "delivered"
    assert len(receiver.requests) == 1 and dispatcher.unmarked == {} and dispatcher.delivered == 1
