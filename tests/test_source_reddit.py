"""The `reddit` source: the real asyncpraw against a fake Reddit on 127.0.0.1, time driven by a fake clock.

Waiting is always on a condition (the inbox or the fake server notify after every item or request),
bounded by a timeout; time inside the source (poll intervals, backoff, rate-limit pauses) is the
ManualClock that FakeSleep advances.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from pydantic import ValidationError

from harvester.clock import ManualClock
from harvester.config.schema import RuleConfig
from harvester.errors import PermanentSourceError
from harvester.health import SourceState
from harvester.plugins import SOURCES
from harvester.sources.base import SourceContext
from harvester.sources.reddit import RedditConfig, RedditSource, decode_cursor, encode_cursor
from tests.fake_reddit import (
    FakeReddit,
    Inbox,
    NotifyingSleep,
    fake_reddit,
    make_ctx,
    reddit_config,
    running,
)

# asyncprawcore 4.0 sends its token request with aiohttp's BasicAuth and `auth=`, both deprecated in
# aiohttp 3.14: a library matter, not ours (the suite turns warnings into errors).
pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]


def state(ctx: SourceContext) -> SourceState:
    return ctx.health.state  # read through a call, so mypy does not narrow it across awaits


def listing_requests(fake: FakeReddit) -> list[float]:
    return [seen.at for seen in fake.requests if seen.path.startswith("/r/")]


async def primed(fake: FakeReddit, *kinds: str) -> None:
    """Wait until each stream has made its first (priming) request."""
    await fake.wait_for(lambda: all(fake.served(kind) >= 1 for kind in kinds or ("submissions", "comments")))


async def test_registered_and_first_start_skips_backlog(clock: ManualClock) -> None:
    assert SOURCES.get("reddit").config_class is RedditConfig
    async with fake_reddit(clock) as fake:
        fake.add("submissions", 30)
        fake.add("comments", 12, subreddit="rust")
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        async with running(RedditSource(reddit_config(fake)), ctx):
            await inbox.wait_for(lambda i: i.cursor is not None and '"c"' in i.cursor and '"s"' in i.cursor)
            new_subs = fake.add("submissions", 3, subreddit="Rust")
            new_comments = fake.add("comments", 2)
            fake.add("submissions", 2, subreddit="golang")  # not watched
            await inbox.wait_for(lambda i: len(i.posts) >= 5)
            await fake.wait_for(lambda: fake.served("submissions") >= 6)  # more polls: nothing else comes
            assert sorted(inbox.uids()) == sorted(f"reddit:{n}" for n in new_subs + new_comments)
            assert fake.tokens_issued == 1
            assert state(ctx) is SourceState.CONNECTED
            streams = ctx.health.extra["streams"]
            assert isinstance(streams, dict)
            assert streams["submissions"]["newest"] == new_subs[-1]
        # The multireddit, the query and the two paths asyncpraw sent.
        paths = {seen.path for seen in fake.requests}
        assert {"/r/python+rust/new", "/r/python+rust/comments/", "/api/v1/access_token"} <= paths
        polls = [s for s in fake.requests if s.path == "/r/python+rust/new"]
        assert polls[0].query == {"limit": "1", "raw_json": "1"}
        assert polls[-1].query["before"] == new_subs[-1]


async def test_backlog_is_configurable(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        names = fake.add("submissions", 30)
        inbox = Inbox()
        source = RedditSource(reddit_config(fake, comments=False, backlog=5))
        async with running(source, make_ctx(inbox, clock)):
            await inbox.wait_for(lambda i: len(i.posts) >= 5)
            await fake.wait_for(lambda: fake.served("submissions") >= 4)
        assert inbox.uids() == [f"reddit:{n}" for n in names[-5:]]  # oldest first


async def test_restart_mid_stream_emits_every_item_exactly_once(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        fake.add("submissions", 40)  # backlog, skipped
        fake.add("comments", 40)
        published: list[str] = []
        first = Inbox()
        ctx = make_ctx(first, clock)
        async with running(RedditSource(reddit_config(fake)), ctx) as task:
            await primed(fake)
            await first.wait_for(lambda i: i.cursor is not None and '"c"' in i.cursor)
            # 250 + 180 new items: several pages each, so the cut falls in the middle of a catch-up.
            published += fake.add("submissions", 250, subreddit="python")
            published += fake.add("comments", 180, subreddit="rust")
            first.block_after = 137
            await first.wait_for(lambda i: len(i.posts) >= 137)
            await asyncio.sleep(0)
            task.cancel()
        committed = first.cursor
        assert committed is not None
        published += fake.add("submissions", 20)  # arrives while the daemon is down
        second = Inbox()
        async with running(RedditSource(reddit_config(fake)), make_ctx(second, clock, cursor=committed)):
            published += fake.add("comments", 15)
            await second.wait_for(lambda i: len(first.posts) + len(i.posts) >= len(published))
            polls = fake.served("submissions") + fake.served("comments")
            # A few more polls of each stream, so a duplicate would have time to show up.
            await fake.wait_for(lambda: fake.served("submissions") + fake.served("comments") >= polls + 6)
        seen = first.uids() + second.uids()
        assert len(seen) == len(set(seen)), "an item was emitted twice"
        assert sorted(seen) == sorted(f"reddit:{n}" for n in published)
        # The second run never asked for the backlog again: it resumed with `before=` its anchors.
        assert fake.tokens_issued == 2


async def test_cursor_round_trip_and_foreign_cursors() -> None:
    cursor = encode_cursor({"submissions": "t3_abc", "comments": ""}, "a+b")
    assert json.loads(cursor) == {"m": "a+b", "s": "t3_abc", "c": ""}
    assert decode_cursor(cursor, "a+b") == {"submissions": "t3_abc", "comments": ""}
    assert decode_cursor(cursor, "a+b+c") == {}  # other subreddits: start afresh
    assert decode_cursor('{"m":"a+b","s":"t1_x"}', "a+b") == {}  # wrong kind for the stream
    with pytest.raises(PermanentSourceError):
        decode_cursor("12345", "a+b")


async def test_5xx_backs_off_with_jitter_and_recovers(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        source = RedditSource(reddit_config(fake, comments=False, backoff_base=2, backoff_cap=60))
        async with running(source, ctx):
            await primed(fake, "submissions")
            fake.inject("submissions", 503, times=4)
            await fake.wait_for(lambda: fake.served("submissions") >= 5)
            assert state(ctx) is SourceState.BACKOFF
            assert ctx.health.last_error is not None and "503" in ctx.health.last_error
            names = fake.add("submissions", 3)
            await inbox.wait_for(lambda i: len(i.posts) == 3)
            assert inbox.uids() == [f"reddit:{n}" for n in names]
            await fake.wait_for(lambda: fake.served("submissions") >= 7)
            assert state(ctx) is SourceState.CONNECTED
        statuses = [s.status for s in fake.requests if s.path.startswith("/r/")]
        # asyncprawcore's own retries (with real-time sleeps) are bypassed: one request per attempt.
        assert statuses[1:5] == [503, 503, 503, 503] and statuses[5] == 200
        gaps = [b - a for a, b in zip(listing_requests(fake)[1:6], listing_requests(fake)[2:7], strict=False)]
        # Full jitter under a doubling ceiling (2, 4, 8, 16 s): never above it, not all equal.
        for gap, ceiling in zip(gaps, (2, 4, 8, 16), strict=False):
            assert 0.1 <= gap <= ceiling + 0.01
        assert len({round(g, 3) for g in gaps[:4]}) > 1
        assert ctx.health.reconnects == 4


async def test_one_failing_stream_does_not_stop_the_other(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        async with running(RedditSource(reddit_config(fake)), make_ctx(inbox, clock)):
            await primed(fake)
            fake.inject("comments", 500, times=1000)
            await fake.wait_for(lambda: fake.served("comments") >= 4)
            names = fake.add("submissions", 4)
            await inbox.wait_for(lambda i: len(i.posts) == 4)
            assert inbox.uids() == [f"reddit:{n}" for n in names]
            fake.faults.clear()


async def test_429_with_headers_pauses_every_stream(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        async with running(RedditSource(reddit_config(fake)), ctx):
            await primed(fake)
            await fake.wait_for(lambda: fake.served("comments") >= 3)
            fake.inject("listing", 429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-used": "600",
                                                 "x-ratelimit-reset": "120"})
            await fake.wait_for(lambda: any(s.status == 429 for s in fake.requests))
            limited_at = next(s.at for s in fake.requests if s.status == 429)
            await fake.wait_for(lambda: sum(1 for s in fake.requests if s.at > limited_at) >= 4)
            after = [s for s in fake.requests if s.at > limited_at]
            assert after and min(s.at for s in after) >= limited_at + 120
            kinds = {s.path for s in after}
            assert {"/r/python+rust/new", "/r/python+rust/comments/"} <= kinds  # both resumed
            ratelimit = ctx.health.extra["ratelimit"]
            assert isinstance(ratelimit, dict) and ratelimit["rate_limited"] == 1


async def test_shared_budget_follows_ratelimit_headers_without_a_429(clock: ManualClock) -> None:
    # 30 requests per 60 s window for the whole source; two streams and engagement re-fetches share it.
    async with fake_reddit(clock, quota=30, window=60.0) as fake:
        inbox = Inbox()
        rules = [RuleConfig(name="all", match_all=True)]
        config = reddit_config(fake, poll_interval=0.5, engagement={"interval": 10})
        ctx = make_ctx(inbox, clock, rules=rules)
        async with running(RedditSource(config), ctx):
            await primed(fake)
            fake.add("submissions", 300)
            fake.add("comments", 300)
            start = clock.now().timestamp()
            await fake.wait_for(lambda: clock.now().timestamp() - start > 600, timeout=30)
        assert fake.violations == 0
        windows: dict[int, int] = {}
        for seen in fake.requests:
            if seen.path != "/api/v1/access_token":
                windows[int(seen.at // 60)] = windows.get(int(seen.at // 60), 0) + 1
        assert max(windows.values()) <= 30
        assert fake.served("info") > 0  # engagement re-fetches ran inside the same budget
        assert len(inbox.posts) > 100


async def test_client_side_request_cap(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        config = reddit_config(fake, poll_interval=0.5, max_requests_per_minute=12)
        async with running(RedditSource(config), make_ctx(inbox, clock)):
            await fake.wait_for(lambda: len(listing_requests(fake)) >= 30, timeout=30)
        times = listing_requests(fake)
        assert all(b - a >= 5.0 - 1e-6 for a, b in itertools.pairwise(times))


async def test_connection_refused_then_server_back(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        source = RedditSource(reddit_config(fake, comments=False))
        async with running(source, ctx):
            await primed(fake, "submissions")
            await fake.stop()
            assert isinstance(ctx.sleep, NotifyingSleep)
            await ctx.sleep.wait_for(lambda: "cannot reach reddit" in (ctx.health.last_error or ""))
            assert state(ctx) is SourceState.BACKOFF
            names = fake.add("submissions", 2)
            await fake.start()
            await inbox.wait_for(lambda i: len(i.posts) == 2)
            assert inbox.uids() == [f"reddit:{n}" for n in names]
        assert source.sessions_opened >= 2  # the session was recycled after the failure
        assert fake.tokens_issued >= 2


async def test_long_run_of_empty_polls_keeps_a_steady_pace(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        fake.add("submissions", 3)
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        source = RedditSource(reddit_config(fake, comments=False, anchor_check_every=50))
        async with running(source, ctx):
            await fake.wait_for(lambda: fake.served("submissions") >= 400, timeout=40)
            names = fake.add("submissions", 1)
            await inbox.wait_for(lambda i: len(i.posts) == 1)
        assert inbox.uids() == [f"reddit:{names[0]}"]
        times = listing_requests(fake)[1:400]
        gaps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
        assert gaps == {5.0}  # no growing sleep between empty polls, no tight loop
        queries = [s.query for s in fake.requests if s.path.startswith("/r/")][1:400]
        # Every 50 empty polls one check without `before` (is the anchor still listed?).
        assert sum(1 for q in queries if "before" not in q) == 7
        stats = ctx.health.extra["streams"]
        assert isinstance(stats, dict) and stats["submissions"]["empty_polls"] >= 390


async def test_vanished_anchor_is_recovered(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        fake.add("submissions", 3)
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        async with running(RedditSource(reddit_config(fake, comments=False, anchor_check_every=5)), ctx):
            await primed(fake, "submissions")
            first = fake.add("submissions", 1)
            await inbox.wait_for(lambda i: len(i.posts) == 1)
            fake.removed.add(first[0])  # a moderator removes the anchor: `before=` it now lists nothing
            later = fake.add("submissions", 4)
            await inbox.wait_for(lambda i: len(i.posts) == 5)
        assert inbox.uids() == [f"reddit:{n}" for n in first + later]
        stats = ctx.health.extra["streams"]
        assert isinstance(stats, dict) and stats["submissions"]["anchor_resets"] == 1


async def test_malformed_items_are_counted_and_passed(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        async with running(RedditSource(reddit_config(fake, submissions=False)), ctx):
            await primed(fake, "comments")
            good = fake.add("comments", 2)
            bad = fake.add("comments", 1)
            fake.update(bad[0], body=None)
            await inbox.wait_for(lambda i: i.cursor is not None and bad[0] in i.cursor)
            assert inbox.uids() == [f"reddit:{n}" for n in good]
            assert ctx.health.malformed == 1
            assert inbox.envelopes[-1].post is None  # the cursor moved past it with an advance
            fake.inject("comments", 200, body="<html>we are busy</html>", content_type="text/html")
            await fake.wait_for(lambda: not fake.faults)
            later = fake.add("comments", 1)
            await inbox.wait_for(lambda i: len(i.posts) == 3)
            assert inbox.uids()[-1] == f"reddit:{later[0]}"
            assert ctx.health.malformed == 1


async def test_bad_credentials_are_permanent(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        with pytest.raises(PermanentSourceError, match="client id/secret"):
            await asyncio.wait_for(RedditSource(reddit_config(fake, client_secret="wrong")).run(ctx), 10)
        assert "wrong" not in repr(reddit_config(fake, client_secret="wrong"))


async def test_missing_subreddit_is_permanent(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        fake.inject("submissions", 404, times=1)
        with pytest.raises(PermanentSourceError, match="does not exist"):
            source = RedditSource(reddit_config(fake, comments=False))
            await asyncio.wait_for(source.run(make_ctx(Inbox(), clock)), 10)


async def test_matched_posts_are_refetched_for_a_bounded_time(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        rules = [RuleConfig(name="acme", keywords=["acme"])]
        config = reddit_config(fake, comments=False, engagement={"interval": 60, "duration": 600})
        ctx = make_ctx(inbox, clock, rules=rules)
        async with running(RedditSource(config), ctx):
            await primed(fake, "submissions")
            hit = fake.add("submissions", 1, text="ACME recalls every rocket", score=3)[0]
            fake.add("submissions", 1, text="nothing to see", score=3)
            await inbox.wait_for(lambda i: len(i.posts) == 2)
            fake.update(hit, score=900, num_comments=120)
            await inbox.wait_for(lambda i: len(i.posts) >= 3)
            again = inbox.posts[2]
            assert again.uid == f"reddit:{hit}" and again.score == 900 and again.replies == 120
            assert inbox.envelopes[-1].cursor is None  # a re-observation does not move the cursor
            start = clock.now().timestamp()
            await fake.wait_for(lambda: clock.now().timestamp() - start > 1200, timeout=30)
        refetches = [s for s in fake.requests if s.path.startswith("/api/info")]
        assert all(s.query["id"] == hit for s in refetches)
        # Every 60 s for 600 s after it was first emitted: about 10 re-fetches, then none.
        assert 8 <= len(refetches) <= 10
        assert max(s.at for s in refetches) <= start + 600
        reemitted = [p for p in inbox.posts if p.uid == f"reddit:{hit}"]
        assert len(reemitted) == len(refetches) + 1


def test_config_errors_name_the_problem() -> None:
    base = {"client_id": "a", "client_secret": "b"}
    with pytest.raises(ValidationError, match="expected a list of names, got 'bitcoin'"):
        RedditConfig.model_validate({**base, "subreddits": "bitcoin"})
    with pytest.raises(ValidationError, match="not a subreddit name"):
        RedditConfig.model_validate({**base, "subreddits": ["bit coin"]})
    with pytest.raises(ValidationError, match="at least one"):
        RedditConfig.model_validate({**base, "subreddits": ["a1"], "submissions": False, "comments": False})
    with pytest.raises(ValidationError, match="http"):
        RedditConfig.model_validate({**base, "subreddits": ["a1"], "oauth_url": "oauth.reddit.com"})
    config = RedditConfig.model_validate({**base, "subreddits": ["r/Stocks", "investing", "stocks"]})
    assert config.multireddit == "investing+stocks"
    assert "b" not in str(config.client_secret)


async def test_page_out_of_id_order_loses_nothing(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        async with running(RedditSource(reddit_config(fake, comments=False)), make_ctx(inbox, clock)):
            await primed(fake, "submissions")
            names = fake.add("submissions", 3)
            items = {item["name"]: item for item in fake.items["submissions"]}
            # Newest first, except the two newest are swapped (equal created time, say).
            order = [names[1], names[2], names[0]]
            body = json.dumps({"kind": "Listing", "data": {"after": None, "before": None, "children": [
                {"kind": "t3", "data": items[name]} for name in order]}})
            fake.inject("submissions", 200, body=body)
            await inbox.wait_for(lambda i: len(i.posts) == 3)
            await fake.wait_for(lambda: fake.served("submissions") >= 5)
        assert inbox.uids() == [f"reddit:{n}" for n in names]


async def test_a_stalled_request_times_out_and_is_retried(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        ctx = make_ctx(inbox, clock)
        config = reddit_config(fake, comments=False, request_timeout=0.2)
        async with running(RedditSource(config), ctx):
            await primed(fake, "submissions")
            fake.stall = asyncio.Event()  # the next listing request hangs until released
            await fake.wait_for(lambda: fake.stalled >= 1)
            assert isinstance(ctx.sleep, NotifyingSleep)
            # The 0.2 s client timeout bounds this wait; the retry is what the test checks.
            await ctx.sleep.wait_for(lambda: "cannot reach reddit" in (ctx.health.last_error or ""))
            fake.stall.set()
            fake.stall = None
            names = fake.add("submissions", 2)
            await inbox.wait_for(lambda i: len(i.posts) == 2)
        assert inbox.uids() == [f"reddit:{n}" for n in names]


async def test_supervisor_marks_bad_credentials_failed(clock: ManualClock) -> None:
    from harvester.supervisor import Supervisor

    async with fake_reddit(clock) as fake:
        ctx = make_ctx(Inbox(), clock)
        supervisor = Supervisor(RedditSource(reddit_config(fake, client_secret="nope")), ctx)
        await asyncio.wait_for(supervisor.run(), 10)
        assert state(ctx) is SourceState.FAILED
        assert ctx.health.last_error is not None and "client id/secret" in ctx.health.last_error
        assert "nope" not in ctx.health.last_error


async def test_client_session_is_recycled_by_age(clock: ManualClock) -> None:
    async with fake_reddit(clock) as fake:
        inbox = Inbox()
        source = RedditSource(reddit_config(fake, comments=False, session_max_age=30))
        async with running(source, make_ctx(inbox, clock)):
            await primed(fake, "submissions")
            names = fake.add("submissions", 1)
            await fake.wait_for(lambda: fake.served("submissions") >= 20)  # 100 s of polls at 5 s
            names += fake.add("submissions", 1)
            await inbox.wait_for(lambda i: len(i.posts) == 2)
        assert inbox.uids() == [f"reddit:{n}" for n in names]
        assert source.sessions_opened >= 3 and fake.tokens_issued == source.sessions_opened
