"""The `twitter` source: the real tweepy against the fake X API in tests/fake_twitter.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from harvester.config.loader import parse_config
from harvester.config.rules import RuleConfig
from harvester.errors import ConfigError, PermanentSourceError
from harvester.health import SourceHealth, SourceState
from harvester.sources.base import Envelope, SourceContext
from harvester.sources.twitter import TwitterConfig, TwitterSource, check_twitter_rules
from harvester.supervisor import Supervisor
from harvester.wire.twitter import RuleProblem, StreamRule
from tests.fake_twitter import DilatedTime, FakeX, FixedRandom, StreamPlan

ACME = RuleConfig(name="acme", keywords=["acme air"])
BETA = RuleConfig(name="beta", cashtags=["BETA"])
NEVER = 1e9  # a stall timeout for tests about something else


class Inbox:
    """The pipeline side of a SourceContext: what the source emitted, and a way to wait for it."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.changed = asyncio.Condition()

    async def put(self, envelope: Envelope) -> bool:
        self.envelopes.append(envelope)
        async with self.changed:
            self.changed.notify_all()
        return True

    def ids(self) -> list[str]:
        return [e.post.native_id for e in self.envelopes if e.post is not None]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 20.0) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)


class RecordingHealth(SourceHealth):
    """Health that remembers every state it was put in, in order."""

    def __init__(self) -> None:
        super().__init__(name="tw", type="twitter")
        self.history: list[SourceState] = []
        self.connected = asyncio.Event()

    def set_state(self, state: SourceState, now: Any, error: str | None = None) -> None:
        if state is not self.state or not self.history:
            self.history.append(state)
        if state is SourceState.CONNECTED:
            self.connected.set()
        super().set_state(state, now, error)


@pytest.fixture
async def fake() -> AsyncIterator[FakeX]:
    server = FakeX()
    await server.start()
    yield server
    await server.stop()


def make(
    fake: FakeX,
    time: DilatedTime,
    *,
    rules: Sequence[RuleConfig] = (ACME,),
    cursor: str | None = None,
    rng: random.Random | None = None,
    **settings: Any,
) -> tuple[TwitterSource, SourceContext, Inbox]:
    settings.setdefault("bearer_token", "token-a")
    settings.setdefault("backfill", {"delay": 0})
    config = TwitterConfig(name="tw", api_base=fake.base, **settings)
    inbox = Inbox()
    ctx = SourceContext(
        name="tw",
        put=inbox.put,
        health=RecordingHealth(),
        clock=time,
        sleep=time.sleep,
        rng=rng or FixedRandom(0.5),
        cursor=cursor,
        rules=rules,
    )
    return TwitterSource(config), ctx, inbox


@contextlib.asynccontextmanager
async def running(source: TwitterSource, ctx: SourceContext) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(ctx))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def jittered(values: list[float], u: float = 0.5, jitter: float = 0.1) -> list[float]:
    return [round(v * (1 + jitter * u), 6) for v in values]


# -- rules -----------------------------------------------------------------------------------------


async def test_rules_are_synced_by_diff_at_start_and_on_reload(fake: FakeX) -> None:
    fake.add_rule('"acme air"', "acme")  # already there from a previous run: left alone
    stale = fake.add_rule("old stuff", "old")
    source, ctx, _inbox = make(fake, DilatedTime(0.01), rules=[ACME, BETA], stall_timeout=NEVER)
    async with running(source, ctx):
        await fake.wait_connections(1)
        posts = [r for r in fake.rule_requests if r["method"] == "POST"]
        assert posts == [
            {"method": "POST", "delete": {"ids": [stale]}},
            {"method": "POST", "add": [{"value": "$BETA", "tag": "beta"}]},
        ]
        assert sorted(r["tag"] for r in fake.rules.values()) == ["acme", "beta"]

        before = len(fake.rule_requests)
        changed = RuleConfig(name="beta", cashtags=["BETA", "GAMMA"])
        diff = await source.reload_rules([ACME, changed])
        assert (
            diff is not None
            and len(diff.delete) == 1
            and diff.add == (StreamRule("($BETA OR $GAMMA)", "beta"),)
        )
        sent = [r for r in fake.rule_requests[before:] if r["method"] == "POST"]
        assert sent == [
            {"method": "POST", "delete": {"ids": [diff.delete[0]]}},
            {"method": "POST", "add": [{"value": "($BETA OR $GAMMA)", "tag": "beta"}]},
        ]
        assert fake.open_count() == 1  # the stream was not touched

        unchanged = await source.reload_rules([ACME, changed])
        assert unchanged is not None and unchanged.empty
        assert [r["method"] for r in fake.rule_requests[before + 3 :]] == ["GET"]


async def test_rule_limits_are_config_errors(fake: FakeX) -> None:
    long_rule = RuleConfig(name="long", keywords=[f"word{i}" for i in range(40)])
    source, ctx, _inbox = make(fake, DilatedTime(0.01), rules=[long_rule], max_rule_length=100)
    with pytest.raises(
        PermanentSourceError, match=r"config error: rules: the stream rule for 'long' is \d+ char"
    ):
        await source.run(ctx)
    with pytest.raises(RuleProblem, match="max_rules"):
        check_twitter_rules(TwitterConfig(bearer_token="t", max_rules=1), [ACME, BETA])
    assert fake.rule_requests == []  # refused before anything was sent

    yaml = """
sources:
  - type: twitter
    bearer_tokens: ["${X_TOKEN}"]
    max_rule_length: 10
    stream_rules:
      - {value: "this is far too long", tag: x}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml, "harvester.yaml", {"X_TOKEN": "sekrit-token"})
    message = str(caught.value)
    assert message.startswith(
        "config error: sources[0]: stream_rules: the stream rule for 'x' is 20 characters"
    )
    assert "sekrit" not in message
    with pytest.raises(ConfigError, match="bearer_token"):
        parse_config("sources: [{type: twitter}]", "harvester.yaml", {})


async def test_x_refusing_a_rule_fails_the_source_with_its_reason(fake: FakeX) -> None:
    source, ctx, _inbox = make(fake, DilatedTime(0.01), stream_rules=[{"value": "INVALID:op", "tag": "bad"}])
    with pytest.raises(
        PermanentSourceError, match="X refused stream rules: UnprocessableEntity for 'INVALID:op'"
    ):
        await source.run(ctx)


# -- reconnect policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plans", "expected"),
    [
        pytest.param([StreamPlan(status=503)] * 8, [5, 10, 20, 40, 80, 160, 320, 320], id="http-503"),
        pytest.param([StreamPlan(status=500)] * 3, [5, 10, 20], id="http-500"),
        pytest.param([StreamPlan(status=429)] * 5, [60, 120, 240, 480, 960], id="rate-limited-429"),
        # aiohttp itself retries a GET once on a dropped connection, so each attempt costs two drops.
        pytest.param([StreamPlan(drop=True)] * 10, [0.25, 0.5, 0.75, 1.0, 1.25], id="network"),
        # A clean close of a connection that delivered nothing is not "healthy": no tight loop.
        pytest.param([StreamPlan(end_after=0, end="close")] * 3, [0.25, 0.5, 0.75], id="empty-clean-close"),
        # A keep-alive proves the connection; its clean close reconnects at once and resets the rest.
        pytest.param(
            [
                StreamPlan(status=503),
                StreamPlan(status=503),
                StreamPlan(preamble=[b""], end_after=0, end="close"),
                StreamPlan(status=503),
            ],
            [5, 10, 0, 5],
            id="clean-close-after-data",
        ),
    ],
)
async def test_backoff_follows_x_policy_for_each_failure_class(
    fake: FakeX, plans: list[StreamPlan], expected: list[float]
) -> None:
    fake.plans = list(plans)
    time = DilatedTime(0.0002)
    source, ctx, _inbox = make(fake, time, stall_timeout=NEVER)
    async with running(source, ctx):
        await fake.wait_connections(1 + sum(1 for p in plans if p.status == 200 and not p.drop))
    backoffs = [round(d, 6) for d in time.calls if d < NEVER / 2]  # leave out the idle stall watchdog
    assert backoffs[: len(expected)] == jittered(expected)
    assert ctx.health.reconnects >= len(expected)


async def test_tokens_rotate_on_401_and_429_and_show_in_health(fake: FakeX) -> None:
    fake.token_status = {"token-a": 401}
    fake.plans = [StreamPlan(status=429)]  # the first connection (with token-b) is rate limited
    time = DilatedTime(0.001)
    source, ctx, _inbox = make(
        fake, time, bearer_token=None, bearer_tokens=["token-a", "token-b", "token-c"], stall_timeout=NEVER
    )
    async with running(source, ctx):
        await fake.wait_connections(1)
        assert [c.token for c in fake.connections] == ["token-a", "token-b", "token-c"]
        assert [c.status for c in fake.connections] == [401, 429, 200]
        assert not [d for d in time.calls if d >= 1]  # rotated at once, no 60 s wait
        tokens = ctx.health.extra["tokens"]
        assert isinstance(tokens, list)
        assert [t["stream"]["status"] for t in tokens] == ["rejected", "rate_limited", "active"]
        assert tokens[1]["stream"]["retry_in_s"] > 50
        assert tokens[0]["rest"]["status"] == "rejected"  # the rules sync found it out first
        assert "token-" not in json.dumps(ctx.health.extra)


async def test_all_tokens_rejected_fails_the_source(fake: FakeX) -> None:
    fake.token_status = {"token-a": 401, "token-b": 401}
    source, ctx, _inbox = make(
        fake, DilatedTime(0.001), bearer_token=None, bearer_tokens=["token-a", "token-b"]
    )
    with pytest.raises(PermanentSourceError, match="every bearer token was rejected") as caught:
        await source.run(ctx)
    assert "token-a" not in str(caught.value)


async def test_a_single_rate_limited_token_waits_out_x_doubling(fake: FakeX) -> None:
    fake.plans = [StreamPlan(status=429), StreamPlan(status=429)]
    time = DilatedTime(0.0005)
    source, ctx, _inbox = make(fake, time, stall_timeout=NEVER)
    async with running(source, ctx):
        await fake.wait_connections(1)
    assert [round(d, 6) for d in time.calls[:2]] == jittered([60, 120])


async def test_a_stall_is_detected_and_the_stream_reconnected(fake: FakeX) -> None:
    fake.plans = [StreamPlan(stall=True)]
    time = DilatedTime(0.005)
    source, ctx, _inbox = make(fake, time)
    async with running(source, ctx):
        await fake.wait_connections(2)
        await asyncio.wait_for(fake.connections[0].closed.wait(), 5)
        assert ctx.health.extra["stalls"] == 1
        assert round(time.calls[1], 6) == jittered([0.25])[0]  # after the watchdog's sleep: network backoff
        assert 19 <= time.calls[0] <= 20  # the watchdog waited (about) one stall timeout


# -- what arrives on the stream ----------------------------------------------------------------------


async def test_bad_lines_never_end_the_stream(fake: FakeX) -> None:
    fake.add_rule('"acme air"', "acme")
    good = fake.tweet("acme")
    untagged = json.loads(fake.stream_line(fake.tweet("acme")))
    untagged["matching_rules"] = [{"id": "1"}]
    fake.plans = [
        StreamPlan(
            preamble=[
                b"{not json",
                json.dumps(untagged).encode(),
                b'{"data": 5}',
                json.dumps({"errors": [{"title": "operational-disconnect", "detail": "soon"}]}).encode(),
                fake.stream_line(good).strip(),
            ]
        )
    ]
    source, ctx, inbox = make(fake, DilatedTime(0.01))
    async with running(source, ctx):
        await inbox.wait_for(lambda: len(inbox.ids()) >= 2)
        live = fake.publish("acme")
        await inbox.wait_for(lambda: live in inbox.ids())
        assert inbox.ids() == [untagged["data"]["id"], good["tweet"]["id"], live]
        assert ctx.health.malformed == 2
        assert ctx.health.extra["last_stream_message"] == "operational-disconnect: soon"
        assert len(fake.connections) == 1  # one connection throughout
        # No gap open: each post carries the cursor, the newest id seen so far.
        assert [e.cursor for e in inbox.envelopes] == [untagged["data"]["id"]] * 2 + [live]


@pytest.mark.parametrize(
    ("size", "connections"),
    [
        pytest.param(600 * 1024, 1, id="over-our-limit"),  # tweepy alone would end its stream here
        pytest.param(3 * 1024 * 1024, 2, id="over-aiohttp-limit"),  # read fails: reconnect, backfill
    ],
)
async def test_an_over_long_line_is_counted_and_the_stream_goes_on(
    fake: FakeX, size: int, connections: int
) -> None:
    fake.add_rule('"acme air"', "acme")
    before = fake.publish("acme")
    lost = fake.tweet("acme")  # sent only after the long line: a broken read loses it, backfill finds it
    fake.timeline.append(lost)
    line = fake.stream_line(fake.timeline[0]).strip()
    fake.plans = [StreamPlan(preamble=[line, b"x" * size, fake.stream_line(lost).strip()])]
    source, ctx, inbox = make(fake, DilatedTime(0.01))
    async with running(source, ctx):
        await inbox.wait_for(lambda: lost["tweet"]["id"] in inbox.ids())
        after = fake.publish("acme")
        await inbox.wait_for(lambda: after in inbox.ids())
        assert ctx.health.malformed == 1
        assert len(fake.connections) == connections
    assert sorted(set(inbox.ids())) == [before, lost["tweet"]["id"], after]


async def test_cancel_closes_the_stream_connection(fake: FakeX) -> None:
    source, ctx, _inbox = make(fake, DilatedTime(0.01))
    task = asyncio.create_task(source.run(ctx))
    await fake.wait_connections(1)
    connection = fake.connections[-1]
    assert not connection.closed.is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # By the time run() has returned the client has closed; the fake sees it as soon as it reads.
    await asyncio.wait_for(connection.closed.wait(), 5)
    assert len(fake.connections) == 1


async def test_health_reports_connecting_connected_and_backoff(fake: FakeX) -> None:
    fake.plans = [StreamPlan(status=503)]
    source, ctx, _inbox = make(fake, DilatedTime(0.001), stall_timeout=NEVER)
    health = ctx.health
    assert isinstance(health, RecordingHealth)
    task = asyncio.create_task(Supervisor(source, ctx).run())
    await fake.wait_connections(1)
    await asyncio.wait_for(health.connected.wait(), 10)
    assert health.history == [
        SourceState.CONNECTING,
        SourceState.BACKOFF,
        SourceState.CONNECTING,
        SourceState.CONNECTED,
    ]
    assert health.last_error == "HTTP 503" and health.reconnects == 1
    assert health.extra["mode"] == "stream" and health.extra["rules"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert health.state is SourceState.STOPPED


# -- gaps ------------------------------------------------------------------------------------------


async def test_restart_backfills_from_the_cursor_within_the_limit(fake: FakeX) -> None:
    fake.add_rule('"acme air"', "acme")
    seen = [fake.publish("acme") for _ in range(5)]
    missed = [fake.publish("acme") for _ in range(130)]
    source, ctx, inbox = make(
        fake, DilatedTime(0.01), cursor=seen[-1], backfill={"delay": 0, "max_posts": 120}
    )
    async with running(source, ctx):
        await inbox.wait_for(lambda: len(inbox.ids()) >= 120)
        await inbox.wait_for(lambda: inbox.envelopes[-1].post is None)  # the cursor advance
        searches = [r for r in fake.search_requests if r["query"] == '"acme air"']
        assert searches[0]["since_id"] == seen[-1]
        assert [r.get("next_token") is not None for r in searches] == [False, True]  # paginated
        # The newest 120 of the gap, oldest first; the cursor moved only after the whole backfill.
        assert inbox.ids() == missed[10:]
        assert [e.cursor for e in inbox.envelopes] == [None] * 120 + [missed[-1]]
        assert ctx.health.extra["last_backfill"]["truncated"] is True  # type: ignore[index]


async def test_poll_mode_searches_since_the_cursor_at_its_interval(fake: FakeX) -> None:
    fake.add_rule('"acme air"', "acme")
    first = [fake.publish("acme") for _ in range(12)]
    time = DilatedTime(0.002)
    source, ctx, inbox = make(fake, time, mode="poll", poll_interval=30)
    async with running(source, ctx):
        await inbox.wait_for(lambda: len(inbox.ids()) == 12)
        assert inbox.ids() == first and ctx.health.state is SourceState.CONNECTED
        second = [fake.publish("acme") for _ in range(150)]  # two pages next time
        await inbox.wait_for(lambda: len(inbox.ids()) == 162)
        assert inbox.ids()[12:] == second
        assert ctx.cursor == second[-1]
    assert fake.rule_requests == [] and fake.connections == []  # polling never touches the stream
    with_since = [r for r in fake.search_requests if "since_id" in r]
    assert with_since and with_since[0]["since_id"] == first[-1]
    assert 30 in time.calls


async def test_backfill_retries_through_5xx_and_rate_limits(fake: FakeX) -> None:
    fake.add_rule('"acme air"', "acme")
    seen = fake.publish("acme")
    missed = [fake.publish("acme") for _ in range(3)]
    time = DilatedTime(0.001)
    fake.clock = time  # x-rate-limit-reset on the test's timeline
    fake.search_failures = [503, 429]
    source, ctx, inbox = make(fake, time, cursor=seen, stall_timeout=NEVER)
    async with running(source, ctx):
        await inbox.wait_for(lambda: inbox.ids() == missed)
        await inbox.wait_for(lambda: ctx.cursor == missed[-1])
        waits = [round(d, 6) for d in time.calls if d < NEVER / 2]
        assert waits[:2] == jittered([5, 60])  # X's HTTP backoff, then the token's 429 wait
        assert ctx.health.state is SourceState.CONNECTED  # the stream never noticed
        assert ctx.health.extra["gaps_not_backfilled"] == 0


async def test_a_backfill_that_cannot_work_gives_the_gap_up(fake: FakeX) -> None:
    fake.add_rule('"acme air"', "acme")
    seen = fake.publish("acme")
    fake.publish("acme")
    fake.search_failures = [403]  # an access level without recent search
    source, ctx, inbox = make(fake, DilatedTime(0.001), cursor=seen, stall_timeout=NEVER)
    async with running(source, ctx):
        await fake.wait_connections(1)
        live = fake.publish("acme")
        await inbox.wait_for(lambda: ctx.cursor == live)  # not held forever
        assert ctx.health.extra["gaps_not_backfilled"] == 1


async def test_a_reload_over_the_limits_is_refused_and_the_running_rules_kept(fake: FakeX) -> None:
    source, ctx, _inbox = make(fake, DilatedTime(0.01), rules=[ACME], max_rules=1, stall_timeout=NEVER)
    async with running(source, ctx):
        await fake.wait_connections(1)
        before = list(fake.rule_requests)
        with pytest.raises(RuleProblem, match=r"2 stream rules, but the limit is 1"):
            await source.reload_rules([ACME, BETA])
        assert fake.rule_requests == before
        assert [r["value"] for r in fake.rules.values()] == ['"acme air"']
