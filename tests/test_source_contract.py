"""Contract tests over the source registry: every registered source type, pointed at its local fake,
emits well-formed posts through `ctx.emit`, reports its state in health, stops cleanly when its task is
cancelled (no connection, task or thread left behind) and resumes from the cursor it last emitted
without emitting a post twice.

Each source type has a harness below. It starts the fake the source's own tests use, builds the source
through the registry from a raw config mapping (as the daemon does), injects the edges the source's own
tests inject (a ManualClock with FakeSleep, the X fake's DilatedTime, discord's FastSleep) and makes the
fake produce posts. Sources run under the Supervisor, as in the daemon. Waits are on `Changes` (woken by
every envelope the source hands over and every health state it sets) or on a fake's own condition, each
with a bound; the bound is never what makes a test pass.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harvester.clock import Clock, ManualClock, Sleep, SystemClock
from harvester.health import SourceHealth, SourceState
from harvester.models import Post
from harvester.plugins import SOURCES
from harvester.sources.base import Envelope, Source, SourceContext
from harvester.sources.reddit import decode_cursor as decode_reddit_cursor
from harvester.supervisor import Supervisor
from tests.fake_discord import Changes, FakeDiscord, FastSleep
from tests.fake_reddit import FakeReddit, NotifyingSleep
from tests.fake_twitter import DilatedTime, FakeX, FixedRandom
from tests.helpers import T0, FakeSleep

# asyncprawcore 4.0 sends its token request with aiohttp's deprecated BasicAuth and `auth=` (a library
# matter, as in tests/test_source_reddit.py); the suite turns warnings into errors.
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]

BOUND = 10.0  # seconds: only bounds a wait for something that should happen at once
UTC_OFFSET = timedelta(0)


# -- the pipeline side: an inbox and a health record that wake the waiters ---------------------------


class Inbox:
    """Stands in for the inbox and the store: every envelope, and the cursor the store would commit
    with the newest one. With `block_after`, it stops accepting posts (a full inbox) after that many."""

    def __init__(self, changes: Changes, block_after: int | None = None) -> None:
        self.changes = changes
        self.block_after = block_after
        self.blocked = False
        self.envelopes: list[Envelope] = []
        self.cursor: str | None = None

    @property
    def posts(self) -> list[Post]:
        return [e.post for e in self.envelopes if e.post is not None]

    def ids(self) -> list[str]:
        return [post.native_id for post in self.posts]

    def uids(self) -> list[str]:
        return [post.uid for post in self.posts]

    async def put(self, envelope: Envelope) -> bool:
        if self.block_after is not None and envelope.post is not None and len(self.posts) >= self.block_after:
            self.blocked = True
            self.changes.notify()
            await asyncio.Event().wait()  # held until the source is cancelled
        self.envelopes.append(envelope)
        if envelope.cursor is not None:
            self.cursor = envelope.cursor
        self.changes.notify()
        return True


class ContractHealth(SourceHealth):
    """Health that remembers every state it was put in, in order, and wakes the waiters."""

    def __init__(self, name: str, type_: str, changes: Changes) -> None:
        super().__init__(name=name, type=type_)
        self.history: list[SourceState] = []
        self._changes = changes

    def set_state(self, state: SourceState, now: Any, error: str | None = None) -> None:
        if state is not self.state:
            self.history.append(state)
        super().set_state(state, now, error)
        self._changes.notify()


# -- one harness per source type ---------------------------------------------------------------------


class Harness(ABC):
    """Points one source type at its fake. `publish(n)` makes the platform produce `n` new posts and
    returns their native ids (None for a source that produces posts by itself)."""

    type: ClassVar[str]

    def __init__(self, changes: Changes, tmp_path: Path) -> None:
        self.changes = changes
        self.tmp_path = tmp_path
        self.name = f"{self.type}-contract"  # not the type: a uid built from the type would show
        self.runs: list[Run] = []
        self.bounded = False  # set from the built source once the fake is up

    async def start(self) -> None:
        """Start the fake (once per test; runs of the source come and go against it)."""

    async def stop(self) -> None:
        """Stop the fake."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The config keys beyond `type` and `name`."""

    @abstractmethod
    def timing(self) -> tuple[Clock, Sleep, random.Random]:
        """The clock, sleep and randomness injected into the source (the same for every run)."""

    @abstractmethod
    async def publish(self, count: int) -> list[str] | None: ...

    def ready(self, ctx: SourceContext) -> bool:
        """The source listens: what is published from now on is live, not backlog."""
        return ctx.health.state is SourceState.CONNECTED

    def open_connections(self) -> list[str]:
        """Connections the fake still holds open, described (the fake's view of the client)."""
        return []

    def build(self) -> Source:
        plugin = SOURCES.get(self.type)
        raw = {"type": self.type, "name": self.name, **self.settings()}
        return plugin.factory(plugin.config_class.model_validate(raw))


class SyntheticHarness(Harness):
    type = "synthetic"

    def __init__(self, changes: Changes, tmp_path: Path) -> None:
        super().__init__(changes, tmp_path)
        self.clock = ManualClock(T0)
        self.sleep = FakeSleep(self.clock)

    def settings(self) -> dict[str, Any]:
        return {"rate": 20.0, "seed": 3, "pace": "realtime", "scenarios": {"enabled": False}}

    def timing(self) -> tuple[Clock, Sleep, random.Random]:
        return self.clock, self.sleep, random.Random(1)

    async def publish(self, count: int) -> list[str] | None:
        return None  # it generates its own stream


class ReplayHarness(Harness):
    type = "replay"

    def __init__(self, changes: Changes, tmp_path: Path) -> None:
        super().__init__(changes, tmp_path)
        self.clock = ManualClock(T0)
        self.sleep = FakeSleep(self.clock)
        self.path = tmp_path / "recorded.jsonl"
        self.path.write_text("")
        self.written = 0

    def settings(self) -> dict[str, Any]:
        return {"path": self.path, "speed": "max"}

    def timing(self) -> tuple[Clock, Sleep, random.Random]:
        return self.clock, self.sleep, random.Random(1)

    async def publish(self, count: int) -> list[str] | None:
        """Append records to the file (a recording that grows); no `source` key, so the configured
        name applies."""
        ids = []
        with self.path.open("a") as file:
            for _ in range(count):
                self.written += 1
                n = self.written
                when = (T0 + timedelta(minutes=n)).isoformat()
                record = {"id": f"r{n}", "text": f"recorded post {n}", "created_at": when, "author": f"u{n}"}
                file.write(json.dumps(record) + "\n")
                ids.append(f"r{n}")
        return ids


class TwitterHarness(Harness):
    type = "twitter"

    def __init__(self, changes: Changes, tmp_path: Path) -> None:
        super().__init__(changes, tmp_path)
        self.fake = FakeX()
        self.time = DilatedTime(0.01)  # the stall watchdog's 20 s is 0.2 s; keep-alives every 0.02 s

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def settings(self) -> dict[str, Any]:
        return {
            "bearer_token": "token-a",
            "api_base": self.fake.base,
            "stream_rules": [{"value": '"acme air"', "tag": "acme"}],
            "backfill": {"delay": 0},
        }

    def timing(self) -> tuple[Clock, Sleep, random.Random]:
        return self.time, self.time.sleep, FixedRandom(0.5)

    async def publish(self, count: int) -> list[str] | None:
        return [self.fake.publish("acme") for _ in range(count)]

    def open_connections(self) -> list[str]:
        streams = [f"stream {i}" for i, c in enumerate(self.fake.connections) if not c.closed.is_set()]
        return streams + server_connections(self.fake._runner)


class RedditHarness(Harness):
    type = "reddit"

    def __init__(self, changes: Changes, tmp_path: Path) -> None:
        super().__init__(changes, tmp_path)
        self.clock = ManualClock(T0)
        self.sleep = NotifyingSleep(self.clock)
        self.fake = FakeReddit(clock=lambda: self.clock.now().timestamp())

    async def start(self) -> None:
        await self.fake.start()
        # A backlog, so the first start has anchors to take (and must not emit it).
        self.fake.add("submissions", 3)
        self.fake.add("comments", 2, subreddit="rust")

    async def stop(self) -> None:
        await self.fake.stop()

    def settings(self) -> dict[str, Any]:
        return {
            "client_id": self.fake.client_id,
            "client_secret": self.fake.client_secret,
            "subreddits": ["python", "rust"],
            "oauth_url": self.fake.url,
            "reddit_url": self.fake.url,
            "poll_interval": 5,
            "max_requests_per_minute": 600,
        }

    def timing(self) -> tuple[Clock, Sleep, random.Random]:
        return self.clock, self.sleep, random.Random(7)

    async def publish(self, count: int) -> list[str] | None:
        return self.fake.add("submissions", count)

    def ready(self, ctx: SourceContext) -> bool:
        anchors = decode_reddit_cursor(ctx.cursor, "python+rust")
        return super().ready(ctx) and all(anchors.get(s) for s in ("submissions", "comments"))

    def open_connections(self) -> list[str]:
        return server_connections(self.fake._runner)


class DiscordHarness(Harness):
    type = "discord"
    channel = 201

    def __init__(self, changes: Changes, tmp_path: Path) -> None:
        super().__init__(changes, tmp_path)
        self.fake = FakeDiscord(guilds={111: [201, 202]}, changes=changes)
        self.sleep = FastSleep()

    async def start(self) -> None:
        await self.fake.start()

    async def stop(self) -> None:
        await self.fake.stop()

    def settings(self) -> dict[str, Any]:
        return {
            "token": self.fake.token,
            "guilds": [111],
            "api_base_url": self.fake.api_base_url,
            "gateway_url": self.fake.gateway_url,
        }

    def timing(self) -> tuple[Clock, Sleep, random.Random]:
        return SystemClock(), self.sleep, random.Random(7)  # the clock only stamps; nothing waits on it

    async def publish(self, count: int) -> list[str] | None:
        messages = [await self.fake.post_message(self.channel, f"contract {i}") for i in range(count)]
        return [str(m["id"]) for m in messages]

    def ready(self, ctx: SourceContext) -> bool:
        return super().ready(ctx) and ctx.cursor is not None  # the channels of GUILD_CREATE are anchored

    def open_connections(self) -> list[str]:
        gateways = [f"gateway {i}" for i, c in enumerate(self.fake.connections) if not c.ws.closed]
        return gateways + server_connections(self.fake._runner)


FACTORIES: dict[str, type[Harness]] = {
    "synthetic": SyntheticHarness,
    "replay": ReplayHarness,
    "twitter": TwitterHarness,
    "reddit": RedditHarness,
    "discord": DiscordHarness,
}


def server_connections(runner: Any) -> list[str]:
    """The HTTP connections an aiohttp fake still has open, as its server sees them, keep-alive ones
    included (a client that closed its session has closed them all). The fakes keep their AppRunner
    private and expose no such count, so it is read from there."""
    server = getattr(runner, "server", None)
    handlers = server.connections if server is not None else []
    return [f"http from {h.transport.get_extra_info('peername') if h.transport else '?'}" for h in handlers]


# -- running a source --------------------------------------------------------------------------------


@dataclass
class Run:
    ctx: SourceContext
    inbox: Inbox
    health: ContractHealth
    supervisor: Supervisor
    task: asyncio.Task[None]
    tasks_before: set[asyncio.Task[Any]]
    threads_before: set[threading.Thread]


def launch(h: Harness, *, cursor: str | None = None, block_after: int | None = None) -> Run:
    tasks_before, threads_before = asyncio.all_tasks(), set(threading.enumerate())
    clock, sleep, rng = h.timing()
    inbox = Inbox(h.changes, block_after)
    health = ContractHealth(h.name, h.type, h.changes)
    ctx = SourceContext(
        name=h.name, put=inbox.put, health=health, clock=clock, sleep=sleep, rng=rng, cursor=cursor
    )
    supervisor = Supervisor(h.build(), ctx)
    task = asyncio.create_task(supervisor.run())
    task.add_done_callback(lambda _task: h.changes.notify())
    run = Run(ctx, inbox, health, supervisor, task, tasks_before, threads_before)
    h.runs.append(run)
    return run


async def feed(
    h: Harness, count: int, *, cursor: str | None = None, block_after: int | None = None
) -> tuple[Run, list[str] | None]:
    """Start a run that gets `count` new posts: a bounded source's input is written before it starts;
    an unbounded one is started, waited for until it listens, then the platform publishes."""
    if h.bounded:
        published = await h.publish(count)
        run = launch(h, cursor=cursor, block_after=block_after)
    else:
        run = launch(h, cursor=cursor, block_after=block_after)
        await h.changes.until(lambda: h.ready(run.ctx) or run.task.done(), f"{h.type} listening", BOUND)
        assert not run.task.done(), f"the supervisor ended: {run.health.state} {run.health.last_error}"
        published = await h.publish(count)
    return run, published


async def received(h: Harness, run: Run, wanted: list[str] | None, count: int) -> None:
    """Until the run has emitted every wanted native id (or, for a self-producing source, `count`
    posts), or a bounded run has ended."""

    def done() -> bool:
        if wanted is None:
            return len(run.inbox.posts) >= count
        return set(wanted) <= set(run.inbox.ids())

    await h.changes.until(lambda: done() or run.task.done(), f"{h.type} posts", BOUND)
    if h.bounded:
        await h.changes.until(run.task.done, f"{h.type} finishing", BOUND)


async def cancel(run: Run) -> None:
    """Cancel the run's task and wait (bounded) for it to end."""
    run.task.cancel()
    done, _pending = await asyncio.wait({run.task}, timeout=BOUND)
    assert run.task in done, f"the source was still running {BOUND} s after its task was cancelled"


def new_tasks(run: Run) -> set[asyncio.Task[Any]]:
    """Tasks started since the run began that have not ended (the test's own task aside)."""
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() - run.tasks_before if t is not me and not t.done()}


def new_threads(run: Run) -> list[threading.Thread]:
    # The loop's default executor (getaddrinfo) keeps idle worker threads: the loop owns them.
    return [
        t
        for t in threading.enumerate()
        if t not in run.threads_before and t.is_alive() and not t.name.startswith("asyncio_")
    ]


# Where the fakes' own coroutines live: their handlers end only when they notice the client has gone.
FAKE_SIDE = (
    "aiohttp/web_protocol.py",
    "aiohttp/web_ws.py",
    "/tests/fake_",
    "harvester/sources/reddit_fake.py",
)


def fake_side(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and any(part in code.co_filename for part in FAKE_SIDE)


def describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None)
    where = code.co_filename.rsplit("site-packages/", 1)[-1] if code is not None else "?"
    return f"{getattr(coro, '__qualname__', coro)} ({where})"


async def nothing_left_running(run: Run) -> list[str]:
    """Wait (bounded) for every task started since the run began to end, and for every thread it
    started to exit; return what is still alive at the bound. The fakes' server-side handler of a
    connection is such a task: it ends only once the client has closed that connection."""
    try:
        async with asyncio.timeout(BOUND):
            while pending := new_tasks(run):
                await asyncio.wait(pending)  # ending tasks may start others (a close handshake): again
            for thread in new_threads(run):
                await asyncio.to_thread(thread.join, BOUND)
    except TimeoutError:
        pass
    return [describe(t) for t in new_tasks(run)] + [t.name for t in new_threads(run)]


@pytest.fixture(params=SOURCES.names())
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    factory = FACTORIES.get(request.param)
    if factory is None:
        pytest.fail(f"source type {request.param!r} is registered but has no contract harness in {__name__}")
    h = factory(Changes(), tmp_path)
    await h.start()
    h.bounded = h.build().bounded  # a replay ends by itself; a stream runs until cancelled
    try:
        yield h
    finally:
        for run in h.runs:
            if not run.task.done():
                await cancel(run)
        await h.stop()


# -- the contract ------------------------------------------------------------------------------------


def test_every_registered_source_type_has_a_contract_harness() -> None:
    missing = set(SOURCES.names()) - set(FACTORIES)
    assert not missing, f"registered without a harness in {__name__}: {sorted(missing)}"
    assert set(FACTORIES) <= set(SOURCES.names()), "a harness for a source type no longer registered"


async def test_emits_well_formed_posts(harness: Harness) -> None:
    run, published = await feed(harness, 3)
    await received(harness, run, published, 3)
    posts = run.inbox.posts
    assert len(posts) >= 3, f"emitted {len(posts)} posts, state {run.health.state} {run.health.last_error}"
    if published is not None:
        assert sorted(run.inbox.ids()) == sorted(published)  # what the platform produced, once, no backlog
    for envelope in run.inbox.envelopes:
        assert envelope.source == harness.name
    for post in posts:
        assert isinstance(post, Post)
        assert post.uid == f"{harness.name}:{post.native_id}" and post.native_id
        assert post.source == harness.name
        for stamp in (post.created_at, post.received_at):
            assert stamp.tzinfo is not None and stamp.utcoffset() == UTC_OFFSET, (post.uid, stamp)
        assert post.text.strip(), f"{post.uid} has no text"


async def test_reports_its_state_and_posts_in_health(harness: Harness) -> None:
    run, published = await feed(harness, 3)
    await received(harness, run, published, 3)
    health = run.health
    expected_end = SourceState.FINISHED if harness.bounded else SourceState.CONNECTED
    assert health.state is expected_end, (health.history, health.last_error)
    assert health.history[0] is SourceState.CONNECTING
    assert SourceState.CONNECTED in health.history
    assert health.history.index(SourceState.CONNECTING) < health.history.index(SourceState.CONNECTED)
    assert health.state_since is not None and health.state_since.tzinfo is not None
    assert health.last_error is None and health.reconnects == 0 and run.supervisor.attempt == 0
    posts = run.inbox.posts  # read together with the health figures: no await in between
    assert health.posts == len(posts) >= 3
    assert health.last_post_at is not None and health.last_post_at.tzinfo is not None
    assert health.last_post_at == posts[-1].received_at
    assert health.malformed == 0 and health.dropped == 0


async def assert_stopped_cleanly(h: Harness, run: Run) -> None:
    assert run.task.cancelled() or h.bounded
    if not h.bounded:
        assert run.health.state is SourceState.STOPPED
    alive = await nothing_left_running(run)
    assert not alive, f"{h.type}: still running after cancel: {alive}; open: {h.open_connections()}"
    assert not h.open_connections(), f"{h.type}: the fake still holds {h.open_connections()}"


async def test_cancel_while_listening_stops_and_leaves_nothing_open(harness: Harness) -> None:
    if harness.bounded:
        pytest.skip("a bounded source ends by itself: its cancel is checked with a full inbox")
    run, published = await feed(harness, 2)
    await received(harness, run, published, 2)
    assert not run.task.done()
    await cancel(run)
    await assert_stopped_cleanly(harness, run)


async def test_cancel_while_the_inbox_is_full_stops_and_leaves_nothing_open(harness: Harness) -> None:
    run, _published = await feed(harness, 5, block_after=2)
    await harness.changes.until(lambda: run.inbox.blocked or run.task.done(), "a blocked emit", BOUND)
    assert run.inbox.blocked and not run.task.done(), (run.health.state, run.health.last_error)
    await cancel(run)
    assert run.task.cancelled()
    assert len(run.inbox.posts) == 2
    await assert_stopped_cleanly(harness, run)


# Real defects the contract found; strict, so a fix turns the case into a failure until the mark goes.
DEFECTS: dict[str, dict[str, str]] = {
    "client_task_left": {},
}


def with_defects(check: str) -> list[Any]:
    reasons = DEFECTS[check]
    return [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=reasons[n])) if n in reasons else n
        for n in SOURCES.names()
    ]


@pytest.mark.parametrize("harness", with_defects("client_task_left"), indirect=True)
async def test_once_cancelled_no_task_of_the_client_is_left_pending(harness: Harness) -> None:
    """Only the fakes may take a moment (to notice the closed sockets); the source and its client
    library must have nothing pending once the source's task has ended."""
    run, _published = await feed(harness, 5, block_after=2)
    await harness.changes.until(lambda: run.inbox.blocked or run.task.done(), "a blocked emit", BOUND)
    await cancel(run)
    client_side = [describe(t) for t in new_tasks(run) if not fake_side(t)]
    assert not client_side, f"{harness.type}: pending after its task ended: {client_side}"


async def test_restart_from_the_last_cursor_emits_nothing_twice(harness: Harness) -> None:
    first, published = await feed(harness, 3)
    await received(harness, first, published, 3)
    if not first.task.done():
        await cancel(first)
    cursor = first.inbox.cursor
    assert cursor is not None, "the source emitted no cursor to resume from"
    assert first.inbox.posts

    if harness.bounded:
        second, later = await feed(harness, 2, cursor=cursor)  # the input grew while it was down
    else:
        while_down = await harness.publish(2)
        second, live = await feed(harness, 2, cursor=cursor)
        later = None if while_down is None or live is None else while_down + live
    await received(harness, second, later, 3)

    again = second.inbox.uids()
    assert again, f"nothing after the restart: {second.health.state} {second.health.last_error}"
    twice = set(first.inbox.uids()) & set(again)
    assert not twice, f"re-emitted after resuming from {cursor!r}: {sorted(twice)}"
    if later is not None:
        # Nothing published meanwhile was lost. (Within one run a source may hand over an overlap of
        # its live feed and its backfill, as twitter documents; dedup downstream absorbs that.)
        assert set(second.inbox.ids()) == set(later)
