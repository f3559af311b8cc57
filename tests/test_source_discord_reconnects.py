"""Twenty forced reconnections and one restart while messages keep arriving: nothing lost, nothing twice.

Half the faults are resumable (a dropped connection with close code 4000, or op 7 RECONNECT): the fake
gateway replays what the client missed. The other half are INVALID_SESSION (false): the session and
its replay buffer are gone, and only the source's history backfill can recover the messages written
in between. Halfway through, the source is stopped as a daemon restart would (the store loses what it
had not committed yet) and started again from the committed cursor, with messages still arriving.

A background writer posts to both channels throughout, and each fault is followed at once by a few
messages, so every gap really holds messages. The store stands in for the writer: it commits every 5
envelopes and the restart loses the uncommitted tail, so the restarted source must fetch those again
from the committed cursor. Overlaps between live frames and backfilled history are dropped by the
source itself (its `duplicates` figure); the test checks the stored set after uid dedup.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from harvester.health import SourceState
from harvester.sources.base import SourceContext
from harvester.sources.discord import DiscordConfig, DiscordSource
from harvester.supervisor import BackoffPolicy, Supervisor
from tests.fake_discord import Changes, FakeDiscord, Store, source_context

GUILD, CHAN_A, CHAN_B = 111, 201, 202
FAULTS = 20
RESTART_AFTER = 10


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = await FakeDiscord(guilds={GUILD: [CHAN_A, CHAN_B]}, changes=Changes()).start()
    yield server
    await server.stop()


class Writer:
    """Users writing into both channels in the background, a message every few milliseconds."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sent: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        n = 0
        while True:
            channel = CHAN_A if n % 3 else CHAN_B
            self.sent.append(await self.fake.post_message(channel, f"background {n}"))
            n += 1
            await asyncio.sleep(0.003)  # pacing of the load only; no assertion depends on it

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def start(fake: FakeDiscord, store: Store, cursor: str | None) -> tuple[asyncio.Task[None], SourceContext]:
    settings = DiscordConfig.model_validate(
        {
            "type": "discord",
            "token": fake.token,
            "guilds": [GUILD],
            "api_base_url": fake.api_base_url,
            "gateway_url": fake.gateway_url,
        }
    )
    ctx = source_context(store, cursor=cursor)
    supervisor = Supervisor(DiscordSource(settings), ctx, policy=BackoffPolicy(base=0.01, floor=0.01))
    return asyncio.create_task(supervisor.run()), ctx


async def at_least(changes: Changes, count: Callable[[], int], target: int, what: str) -> None:
    await changes.until(lambda: count() >= target, what)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_twenty_reconnects_and_a_restart_store_every_message_once(fake: FakeDiscord) -> None:
    changes = fake.changes
    store = Store(changes, commit_every=5)
    task, ctx = start(fake, store, cursor=None)
    await changes.until(lambda: ctx.health.state is SourceState.CONNECTED and ctx.cursor is not None, "ready")
    writer = Writer(fake)
    gap_messages: list[dict[str, Any]] = []
    reidentifies = resumes = 0
    try:
        for fault in range(FAULTS):
            if fault == RESTART_AFTER:
                await stop(task)
                store.crash()  # what was not committed yet is lost, as with kill -9
                for i in range(5):
                    gap_messages.append(await fake.post_message(CHAN_A if i % 2 else CHAN_B, f"down {i}"))
                sessions = len(fake.identifies)
                task, ctx = start(fake, store, cursor=store.committed_cursor)
                await at_least(
                    changes, lambda: len(fake.identifies), sessions + 1, "identify after the restart"
                )

            # Let some live traffic through before the next fault.
            seen = len(store.everything())
            await at_least(changes, lambda: len(store.everything()), seen + 3, f"live traffic {fault}")

            if fault % 2 == 0:
                resumes += 1
                if fault % 4 == 0:
                    await fake.drop_connection(4000)
                else:
                    await fake.send_reconnect()
            else:
                reidentifies += 1
                await fake.invalidate_session()
            for i in range(3):  # written while the client is away
                gap_messages.append(await fake.post_message(CHAN_A if i % 2 else CHAN_B, f"gap {fault}.{i}"))
            if fault % 2 == 0:
                await at_least(changes, lambda: fake.resumed, resumes, f"resume {fault}")
            else:
                identified = 1 + reidentifies + (1 if fault > RESTART_AFTER else 0)
                await at_least(changes, lambda: len(fake.identifies), identified, f"identify {fault}")
    finally:
        await writer.stop()

    expected = {m["id"] for m in [*writer.sent, *gap_messages]}
    await changes.until(
        lambda: expected <= {p.native_id for p in store.everything()}, "every message stored", bound=30
    )
    await stop(task)
    store.commit()  # the graceful stop commits the rest

    stored = Counter(p.native_id for p in store.stored)
    assert set(stored) == expected  # none lost, none invented: exactly once after uid dedup
    assert fake.resumed == FAULTS // 2
    assert len(fake.identifies) == 1 + FAULTS // 2 + 1  # first start, ten re-identifies, the restart
    assert ctx.health.state is SourceState.STOPPED and ctx.health.malformed == 0
    duplicates = sum(stored.values()) - len(stored)
    figures = ctx.health.extra["discord"]
    assert isinstance(figures, dict)
    print(
        f"\ndiscord reconnect run: {len(expected)} messages, {FAULTS} faults "
        f"({fake.resumed} resumes, {FAULTS // 2} re-identifies), 1 restart; "
        f"stored {sum(stored.values())} posts, {duplicates} duplicates before dedup "
        f"(the source dropped {figures['duplicates']} overlaps after the restart); "
        f"{len(fake.history_calls)} history requests"
    )
