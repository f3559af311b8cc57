"""The `discord` source end to end: the real discord.py against a fake Discord on 127.0.0.1.

Covered here: config, login, IDENTIFY/READY/GUILD_CREATE, live messages and the allow-list, RESUME
with replay, RECONNECT, INVALID_SESSION with the re-IDENTIFY wait going through the injected sleep,
zombie connections, history backfill (paging, limit, restart, quiet channels, a full live buffer,
unreadable channels), fatal close codes and bad tokens marking the source failed while another keeps
running, and transient failures restarting through the supervisor.

The re-IDENTIFY wait (discord.py sleeps 5 s there) is the source's `identify_delay`, awaited through
`ctx.sleep`; here that is `FastSleep`, which records the 5.0 and only yields, so no test waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yarl

from harvester.config.loader import parse_config
from harvester.errors import ConfigError
from harvester.health import SourceState
from harvester.sources.base import SourceContext
from harvester.sources.discord import DiscordConfig, DiscordSource
from harvester.sources.discord_client import DiscordWebSocket, Route, rewrite_gateway_url, rewrite_rest_url
from harvester.supervisor import BackoffPolicy, Supervisor
from harvester.wire.discord import decode_cursor, encode_cursor
from tests.fake_discord import Changes, FakeDiscord, FastSleep, Store, source_context

GUILD, OTHER_GUILD = 111, 999
CHAN_A, CHAN_B, FOREIGN = 201, 202, 901
INTENT_GUILDS, INTENT_GUILD_MESSAGES, INTENT_MESSAGE_CONTENT = 1 << 0, 1 << 9, 1 << 15


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
async def fake(changes: Changes) -> AsyncIterator[FakeDiscord]:
    guilds = {GUILD: [CHAN_A, CHAN_B], OTHER_GUILD: [FOREIGN]}
    server = await FakeDiscord(guilds=guilds, changes=changes).start()
    yield server
    await server.stop()


def config(fake: FakeDiscord, **overrides: Any) -> DiscordConfig:
    data: dict[str, Any] = {
        "type": "discord",
        "token": fake.token,
        "guilds": [GUILD],
        "api_base_url": fake.api_base_url,
        "gateway_url": fake.gateway_url,
        **overrides,
    }
    return DiscordConfig.model_validate(data)


class Running:
    """A supervised source run in a task, stopped (cancelled) at the end of the test."""

    def __init__(self, settings: DiscordConfig, ctx: SourceContext) -> None:
        self.ctx = ctx
        policy = BackoffPolicy(base=0.01, floor=0.01)
        self.supervisor = Supervisor(DiscordSource(settings), ctx, policy=policy)
        self.task = asyncio.create_task(self.supervisor.run())

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def running() -> AsyncIterator[list[Running]]:
    runs: list[Running] = []
    yield runs
    for run in runs:
        await run.stop()


def start(runs: list[Running], settings: DiscordConfig, ctx: SourceContext) -> Running:
    run = Running(settings, ctx)
    runs.append(run)
    return run


def figure(ctx: SourceContext, name: str) -> int:
    """One of the figures the source publishes in `health.extra["discord"]` (0 before the first)."""
    extra = ctx.health.extra.get("discord")
    value = extra.get(name, 0) if isinstance(extra, dict) else 0
    assert isinstance(value, int)
    return value


def posted_ids(store: Store) -> list[str]:
    return [p.native_id for p in store.everything()]


async def ready(fake: FakeDiscord, ctx: SourceContext, sessions: int = 1) -> None:
    """Connected, and the channels of the first GUILD_CREATE anchored in the cursor."""
    await fake.changes.until(
        lambda: (
            len(fake.sessions) >= sessions
            and ctx.health.state is SourceState.CONNECTED
            and ctx.cursor is not None
        ),
        f"session {sessions}",
    )


# -- config ------------------------------------------------------------------------------------------


def test_config_reads_the_token_from_the_environment_and_keeps_it_secret() -> None:
    text = (
        "sources:\n  - type: discord\n    token: ${DISCORD_BOT_TOKEN}\n    guilds: [111]\n"
        "    channels: ['202']\n    identify_delay: 2s\n"
    )
    loaded = parse_config(text, "h.yaml", {"DISCORD_BOT_TOKEN": "tok-abc123"})
    source = loaded.config.sources[0]
    assert isinstance(source, DiscordConfig)
    assert source.token.get_secret_value() == "tok-abc123"
    assert "tok-abc123" in loaded.secrets
    assert "tok-abc123" not in repr(source)
    assert source.channels == [202] and source.identify_delay == 2.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("token: x", "guilds and/or channels"),
        ("token: ''\n    guilds: [1]", "token is empty"),
        ("token: Bot abc\n    guilds: [1]", "'Bot ' prefix"),
        ("token: x\n    guilds: [1]\n    api_base_url: ftp://x", "http"),
        ("token: x\n    guilds: [1]\n    gateway_url: http://x", "ws://"),
        ("token: x\n    guilds: [0]", "greater than 0"),
        ("guilds: [1]", "token"),
    ],
)
def test_config_mistakes_are_one_line_errors(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(f"sources:\n  - type: discord\n    {entry}\n", "h.yaml", {})
    assert "sources[0]" in str(info.value)


def test_allow_list_semantics() -> None:
    by_guild = DiscordConfig.model_validate({"type": "discord", "token": "t", "guilds": [1]})
    assert by_guild.allows((1, 5)) and not by_guild.allows((2, 5))
    assert by_guild.watches((1, 5), 0) and not by_guild.watches((1, 5), 4)  # a category holds no messages
    by_channel = DiscordConfig.model_validate({"type": "discord", "token": "t", "channels": [5]})
    assert by_channel.allows((1, 5)) and by_channel.allows((2, 5)) and not by_channel.allows((1, 6))
    both = DiscordConfig.model_validate({"type": "discord", "token": "t", "guilds": [1], "channels": [5]})
    assert both.allows((1, 5)) and not both.allows((2, 5)) and not both.allows((1, 6))


def test_url_rewriting_touches_only_the_library_defaults() -> None:
    base = "http://127.0.0.1:9/api/v10"
    assert rewrite_rest_url(Route.BASE + "/users/@me", base, Route.BASE) == base + "/users/@me"
    assert (
        rewrite_rest_url("https://cdn.discordapp.com/x", base, Route.BASE) == "https://cdn.discordapp.com/x"
    )
    default = DiscordWebSocket.DEFAULT_GATEWAY
    ours = yarl.URL("ws://127.0.0.1:9/gateway")
    first = str(default.with_query(v=10, encoding="json"))
    assert rewrite_gateway_url(first, ours, default) == "ws://127.0.0.1:9/gateway?v=10&encoding=json"
    resume = "ws://127.0.0.1:9/resume?v=10"
    assert rewrite_gateway_url(resume, ours, default) == resume


# -- login, session, live messages -------------------------------------------------------------------


async def test_login_identify_and_live_messages_from_allowed_channels_only(
    fake: FakeDiscord, running: list[Running]
) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake), ctx)
    await ready(fake, ctx)

    assert fake.rest_calls[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert fake.connect_paths == ["/gateway"]
    intents = fake.identifies[0]["intents"]
    assert intents & INTENT_GUILDS and intents & INTENT_GUILD_MESSAGES and intents & INTENT_MESSAGE_CONTENT
    assert fake.heartbeats >= 1
    # Both channels of the allowed guild are anchored at once, so a quiet one is backfilled later too.
    assert set(decode_cursor(ctx.cursor)) == {(GUILD, CHAN_A), (GUILD, CHAN_B)}

    await fake.post_message(FOREIGN, "not ours")
    reply_to = await fake.post_message(CHAN_A, "first")
    await fake.post_message(
        CHAN_B,
        "$ACME outage",
        type=19,
        attachments=[{"id": "1", "filename": "a.png"}],
        mentions=[{"id": "700000000000000001", "username": "bob", "discriminator": "0"}],
        message_reference={"message_id": reply_to["id"], "channel_id": str(CHAN_A)},
    )
    await fake.changes.until(lambda: len(store.everything()) == 2, "two posts")
    first, second = store.everything()
    assert (first.text, second.text) == ("first", "$ACME outage")
    assert second.channel == f"{GUILD}/{CHAN_B}" and second.author == "alice"
    assert second.ref == f"discord:{reply_to['id']}"
    assert second.url == f"https://discord.com/channels/{GUILD}/{CHAN_B}/{second.native_id}"
    assert decode_cursor(ctx.cursor)[(GUILD, CHAN_B)] == int(second.native_id)
    assert ctx.health.state is SourceState.CONNECTED and ctx.health.posts == 2
    assert fake.history_calls == []  # a first start has nothing to backfill


async def test_channel_allow_list_and_system_messages(fake: FakeDiscord, running: list[Running]) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake, guilds=[], channels=[CHAN_B], include_bots=False), ctx)
    await ready(fake, ctx)
    assert set(decode_cursor(ctx.cursor)) == {(GUILD, CHAN_B)}
    await fake.post_message(CHAN_A, "other channel")
    await fake.post_message(CHAN_B, "joined", type=7)
    await fake.post_message(CHAN_B, "beep", author={"id": "5", "username": "newsbot", "bot": True})
    last = await fake.post_message(CHAN_B, "kept")
    await fake.changes.until(lambda: decode_cursor(ctx.cursor)[(GUILD, CHAN_B)] == int(last["id"]), "cursor")
    assert store.texts() == ["kept"]
    assert figure(ctx, "skipped") == 2


async def test_malformed_live_message_is_counted_and_skipped(
    fake: FakeDiscord, running: list[Running]
) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake), ctx)
    await ready(fake, ctx)
    await fake.dispatch_raw("MESSAGE_CREATE", {"id": "17", "guild_id": str(GUILD), "channel_id": str(CHAN_A)})
    await fake.post_message(CHAN_A, "after")
    await fake.changes.until(lambda: store.texts() == ["after"], "the next message")
    assert ctx.health.malformed == 1
    assert ctx.health.state is SourceState.CONNECTED


# -- RESUME, RECONNECT, INVALID_SESSION, zombies -----------------------------------------------------


async def test_dropped_connection_resumes_and_the_gateway_replays_missed_events(
    fake: FakeDiscord, running: list[Running]
) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake), ctx)
    await ready(fake, ctx)
    await fake.drop_connection(4000)
    for i in range(3):  # sent while the client is away: only the session's replay has them
        await fake.post_message(CHAN_A, f"missed {i}")
    await fake.changes.until(lambda: len(store.everything()) == 3, "replayed posts")
    assert store.texts() == ["missed 0", "missed 1", "missed 2"]
    assert fake.resumed == 1 and len(fake.identifies) == 1
    assert fake.connect_paths == ["/gateway", "/resume"]  # resumes use READY's resume_gateway_url
    assert fake.history_calls == []  # a RESUME needs no backfill
    assert ctx.health.reconnects == 1
    await fake.changes.until(lambda: figure(ctx, "resumes") == 1, "resume counted")


async def test_reconnect_opcode_resumes(fake: FakeDiscord, running: list[Running]) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake), ctx)
    await ready(fake, ctx)
    await fake.send_reconnect()
    await fake.post_message(CHAN_A, "during reconnect")
    await fake.changes.until(lambda: store.texts() == ["during reconnect"], "the message")
    await fake.changes.until(lambda: fake.resumed == 1, "resume")
    assert len(fake.identifies) == 1


async def test_resumable_invalid_session_resumes(fake: FakeDiscord, running: list[Running]) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake), ctx)
    await ready(fake, ctx)
    await fake.invalidate_session(resumable=True)
    await fake.post_message(CHAN_A, "kept by the session")
    await fake.changes.until(lambda: store.texts() == ["kept by the session"], "the message")
    await fake.changes.until(lambda: fake.resumed == 1, "resume")
    assert len(fake.identifies) == 1 and fake.history_calls == []


async def test_quick_reconnections_are_paced_through_the_injected_sleep(
    fake: FakeDiscord, running: list[Running]
) -> None:
    store = Store(fake.changes)
    sleep = FastSleep()
    ctx = source_context(store, sleep=sleep)
    start(running, config(fake), ctx)
    await ready(fake, ctx)
    for n in range(1, 5):
        await fake.drop_connection(4000)
        await fake.changes.until(lambda n=n: fake.resumed == n, f"resume {n}")  # type: ignore[misc]
    # Two immediate reconnections, then jittered waits below 1 s and 2 s (the rng is seeded).
    assert len(sleep.calls) == 2
    assert 0 <= sleep.calls[0] <= 1 and 0 <= sleep.calls[1] <= 2
    assert ctx.health.reconnects == 4


async def test_invalid_session_reidentifies_through_the_injected_wait_and_backfills(
    fake: FakeDiscord, running: list[Running]
) -> None:
    store = Store(fake.changes)
    sleep = FastSleep()
    ctx = source_context(store, sleep=sleep)
    start(running, config(fake, identify_delay=5), ctx)
    await ready(fake, ctx)
    await fake.post_message(CHAN_A, "before")
    await fake.changes.until(lambda: store.texts() == ["before"], "live message")
    await fake.invalidate_session()
    for i in range(3):  # the old session is gone: these exist only in channel history
        await fake.post_message(CHAN_A if i % 2 else CHAN_B, f"gap {i}")
    await fake.changes.until(lambda: len(store.everything()) == 4, "backfilled gap")
    await fake.post_message(CHAN_A, "live again")
    await fake.changes.until(lambda: len(store.everything()) == 5, "live again")
    assert sorted(store.texts()) == sorted(["before", "gap 0", "gap 1", "gap 2", "live again"])
    assert len(fake.identifies) == 2 and fake.resumes == 0
    assert 5.0 in sleep.calls  # discord.py's 5 s pre-IDENTIFY wait, through ctx.sleep
    assert {call[0] for call in fake.history_calls} == {CHAN_A, CHAN_B}
    assert all(limit == 100 for _, _, limit in fake.history_calls)
    assert figure(ctx, "reidentifies") == 1


async def test_zombie_connection_is_detected_and_resumed(fake: FakeDiscord, running: list[Running]) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake, heartbeat_timeout=0.5), ctx)  # real seconds: socket-level behaviour
    await ready(fake, ctx)
    fake.make_zombie()
    await fake.post_message(CHAN_A, "sent into the void")
    await fake.changes.until(lambda: store.texts() == ["sent into the void"], "replay after the zombie")
    assert fake.resumed == 1 and len(fake.identifies) == 1


# -- backfill ----------------------------------------------------------------------------------------


async def fill_history(fake: FakeDiscord, channel: int, count: int) -> list[dict[str, Any]]:
    """Messages written while nobody is connected: they exist only in the channel's history."""
    return [await fake.post_message(channel, f"old {i}") for i in range(count)]


async def test_restart_backfills_history_after_the_cursor_oldest_first_in_pages(
    fake: FakeDiscord, running: list[Running]
) -> None:
    history = await fill_history(fake, CHAN_A, 250)
    cursor = encode_cursor({(GUILD, CHAN_A): int(history[9]["id"]), (GUILD, CHAN_B): int(history[0]["id"])})
    store = Store(fake.changes)
    ctx = source_context(store, cursor=cursor)
    start(running, config(fake), ctx)
    await fake.changes.until(lambda: len(store.everything()) == 240, "240 backfilled posts")
    assert posted_ids(store) == [m["id"] for m in history[10:]]  # oldest first, nothing twice
    calls_a = [(after, limit) for channel, after, limit in fake.history_calls if channel == CHAN_A]
    assert calls_a == [
        (int(history[9]["id"]), 100),
        (int(history[109]["id"]), 100),
        (int(history[209]["id"]), 100),
    ]
    assert decode_cursor(ctx.cursor)[(GUILD, CHAN_A)] == int(history[-1]["id"])
    await fake.post_message(CHAN_A, "live")
    await fake.changes.until(lambda: store.texts()[-1:] == ["live"], "live after backfill")


async def test_backfill_stops_at_the_limit_and_says_so(fake: FakeDiscord, running: list[Running]) -> None:
    history = await fill_history(fake, CHAN_A, 30)
    store = Store(fake.changes)
    ctx = source_context(store, cursor=encode_cursor({(GUILD, CHAN_A): int(history[0]["id"]) - 1}))
    start(running, config(fake, backfill_limit=12), ctx)
    await ready(fake, ctx)
    await fake.changes.until(lambda: len(store.everything()) == 12, "12 posts")
    assert posted_ids(store) == [m["id"] for m in history[:12]]
    assert [limit for _, _, limit in fake.history_calls] == [12]
    assert figure(ctx, "backfill_truncated") == 1
    await fake.post_message(CHAN_A, "live")
    await fake.changes.until(lambda: store.texts()[-1:] == ["live"], "live after a truncated backfill")


async def test_quiet_channel_is_anchored_and_backfilled_after_a_restart(
    fake: FakeDiscord, running: list[Running]
) -> None:
    store = Store(fake.changes)
    first = start(running, config(fake), source_context(store))
    await ready(fake, first.ctx)
    await first.stop()
    assert store.committed_cursor is not None and store.everything() == []  # only anchors committed
    await fake.post_message(CHAN_B, "while down")
    second = start(running, config(fake), source_context(store, cursor=store.committed_cursor))
    await fake.changes.until(lambda: store.texts() == ["while down"], "backfill of the quiet channel")
    assert figure(second.ctx, "backfilled") == 1


async def test_a_full_live_buffer_drops_nothing(fake: FakeDiscord, running: list[Running]) -> None:
    store = Store(fake.changes)
    ctx = source_context(store)
    start(running, config(fake, live_buffer=2), ctx)
    await ready(fake, ctx)
    store.gate = asyncio.Event()  # the inbox is full: emitting blocks, frames pile up
    sent = [await fake.post_message(CHAN_A, f"burst {i}") for i in range(12)]
    await fake.changes.until(lambda: figure(ctx, "live_overflow") > 0, "overflow")
    store.gate.set()
    await fake.changes.until(lambda: set(posted_ids(store)) == {m["id"] for m in sent}, "all 12")
    assert len(posted_ids(store)) == 12  # the overlap of live and backfill was dropped at the source
    assert fake.history_calls  # the dropped ones came back through history


async def test_unreadable_channels_are_skipped_and_gone_ones_forgotten(
    fake: FakeDiscord, running: list[Running]
) -> None:
    fake.forbidden.add(CHAN_B)
    history = await fill_history(fake, CHAN_A, 2)
    gone = 555
    cursor = encode_cursor({(GUILD, CHAN_A): int(history[0]["id"]), (GUILD, CHAN_B): 1, (GUILD, gone): 1})
    store = Store(fake.changes)
    ctx = source_context(store, cursor=cursor)
    start(running, config(fake), ctx)
    await fake.changes.until(
        lambda: figure(ctx, "backfill_skipped_channels") == 2,
        "both unreadable channels skipped",
    )
    assert store.texts() == ["old 1"]
    entries = decode_cursor(ctx.cursor)
    assert (GUILD, gone) not in entries and (GUILD, CHAN_B) in entries
    assert ctx.health.state is SourceState.CONNECTED


# -- failures ----------------------------------------------------------------------------------------


async def test_missing_intent_fails_the_source_and_another_keeps_running(
    changes: Changes, running: list[Running]
) -> None:
    no_intent = await FakeDiscord(close_on_identify=4014, changes=changes).start()
    healthy = await FakeDiscord(guilds={GUILD: [CHAN_A]}, changes=changes).start()
    try:
        store_a, store_b = Store(changes), Store(changes)
        a = start(running, config(no_intent), source_context(store_a, name="dc-a"))
        b = start(running, config(healthy), source_context(store_b, name="dc-b"))
        await asyncio.wait_for(a.task, timeout=15)  # the supervisor returns: failed, not retried
        assert a.ctx.health.state is SourceState.FAILED
        error = a.ctx.health.last_error or ""
        assert "4014" in error and "MESSAGE_CONTENT" in error and "Developer Portal" in error
        assert len(no_intent.identifies) == 1 and no_intent.connects == 1

        await ready(healthy, b.ctx)
        await healthy.post_message(CHAN_A, "still collecting")
        await changes.until(lambda: store_b.texts() == ["still collecting"], "the other source")
        assert b.ctx.health.state is SourceState.CONNECTED
        # Each client used its own URLs; the process-global defaults were never touched.
        assert healthy.rest_calls[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
        assert no_intent.rest_calls == ["GET /users/@me", "GET /oauth2/applications/@me"]
        assert Route.BASE == "https://discord.com/api/v10"
        assert yarl.URL("wss://gateway.discord.gg/") == DiscordWebSocket.DEFAULT_GATEWAY
    finally:
        await no_intent.stop()
        await healthy.stop()


async def test_bad_token_fails_at_login_without_leaking_it(fake: FakeDiscord, running: list[Running]) -> None:
    ctx = source_context(Store(fake.changes))
    run = start(running, config(fake, token="wrong-token-123"), ctx)
    await asyncio.wait_for(run.task, timeout=15)
    assert ctx.health.state is SourceState.FAILED
    assert "rejected the bot token" in (ctx.health.last_error or "")
    assert "wrong-token-123" not in (ctx.health.last_error or "")
    assert fake.rest_calls == ["GET /users/@me"] and fake.connects == 0


async def test_gateway_authentication_failure_is_fatal_and_not_retried(
    changes: Changes, running: list[Running]
) -> None:
    fake = await FakeDiscord(close_on_identify=4004, changes=changes).start()
    try:
        ctx = source_context(Store(changes))
        run = start(running, config(fake), ctx)
        await asyncio.wait_for(run.task, timeout=15)
        assert ctx.health.state is SourceState.FAILED and "4004" in (ctx.health.last_error or "")
        assert fake.connects == 1 and ctx.health.reconnects == 0
    finally:
        await fake.stop()


async def test_corrupt_cursor_is_a_permanent_error(fake: FakeDiscord, running: list[Running]) -> None:
    ctx = source_context(Store(fake.changes), cursor="12345")
    run = start(running, config(fake), ctx)
    await asyncio.wait_for(run.task, timeout=15)
    assert ctx.health.state is SourceState.FAILED and "checkpoint" in (ctx.health.last_error or "")
    assert fake.rest_calls == []


async def test_unreachable_gateway_restarts_through_the_supervisor_and_backfills(
    fake: FakeDiscord, running: list[Running]
) -> None:
    store = Store(fake.changes)
    sleep = FastSleep()
    ctx = source_context(store, sleep=sleep)
    run = start(running, config(fake), ctx)
    await ready(fake, ctx)
    fake.gateway_unavailable = True
    await fake.drop_connection(4000)
    await fake.post_message(CHAN_A, "during the outage")
    await fake.changes.until(lambda: run.supervisor.attempt >= 2, "two failed runs")
    assert ctx.health.last_error is not None and "503" in ctx.health.last_error
    assert run.supervisor.delays  # restarts waited the supervisor's backoff (through ctx.sleep)
    fake.gateway_unavailable = False
    await fake.changes.until(lambda: store.texts() == ["during the outage"], "backfill after restart")
    await fake.changes.until(lambda: ctx.health.state is SourceState.CONNECTED, "connected again")
    assert len(fake.identifies) == 2


def test_cursor_json_is_what_the_store_keeps() -> None:
    # The cursor is one string per source: compact JSON, ids as strings (no float rounding anywhere).
    text = encode_cursor({(GUILD, CHAN_A): 2**63 + 5})
    assert json.loads(text) == {f"{GUILD}/{CHAN_A}": str(2**63 + 5)}
