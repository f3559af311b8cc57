"""The `twitter` source: X's v2 filtered stream through tweepy, with X's reconnect policy, bearer-token
rotation, gap backfill through recent search, and a polling mode for access levels without the stream.

```yaml
sources:
  - type: twitter
    bearer_tokens: ["${X_BEARER_TOKEN}", "${X_BEARER_TOKEN_2}"]
    # mode: poll            # recent search every poll_interval instead of the stream
    # stream_rules:         # default: derived from the daemon's rules
    #   - {value: '"acme air" -is:retweet lang:en', tag: acme-air}
```

How it behaves (the README section has the details):

* **Rules.** At start (and on `reload_rules`) the wanted stream rules are derived from the daemon's
  rules (or taken from `stream_rules`), checked against `max_rules` / `max_rule_length`, and synced by
  diff: X's current rules are read, only rules that changed are deleted or added.
* **Connections.** One tweepy connection at a time (see `twitter_client`). Between connections the
  wait follows X's policy (`twitter_policy`) through the injected `ctx.sleep`, with jitter from
  `ctx.rng`. A watchdog on `ctx.clock` ends a connection that has delivered neither data nor a
  keep-alive for `stall_timeout`. Cancelling the source (SIGTERM) closes the connection before
  `run` returns, because X counts an unclosed stream against the app's connection limit.
* **Tokens.** A 429 benches the token in use for X's rate-limit wait and the next usable one is
  tried at once; a 401 benches it for good. Each token's state is in health (`extra.tokens`).
* **Gaps.** The cursor is the newest tweet id seen. Every disconnect, and every start with a cursor,
  opens a gap; once the stream is back (and `backfill.delay` has passed, so search has indexed the
  gap) each rule's query is searched with `since_id` = the newest id seen before the gap, up to
  `backfill.max_posts`. While a gap is open the cursor is not advanced, so a crash during it resumes
  from before the gap; dedup absorbs the overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import aiohttp
import structlog
from aiohttp.http_exceptions import LineTooLong
from pydantic import BaseModel, Field, PositiveInt, SecretStr, field_validator, model_validator
from tweepy import StreamRule as TweepyRule  # type: ignore[import-untyped]
from tweepy import errors as tweepy_errors

from harvester.config.base import Strict
from harvester.config.durations import Duration
from harvester.config.rules import RuleConfig
from harvester.config.schema import SourceConfig
from harvester.errors import MalformedPayload, PermanentSourceError, SourceError, TransientSourceError
from harvester.health import SourceState
from harvester.models import Post
from harvester.plugins import SOURCES
from harvester.sources.base import Source, SourceContext
from harvester.sources.twitter_client import (
    DEFAULT_API_BASE,
    AttemptResult,
    OneShotStream,
    rest_clients,
    rewriting_session,
)
from harvester.sources.twitter_policy import (
    AllTokensRejected,
    Backoff,
    Failure,
    ReconnectPolicy,
    TokenPool,
)
from harvester.wire.twitter import (
    EXPANSIONS,
    TWEET_FIELDS,
    USER_FIELDS,
    RuleDiff,
    RuleProblem,
    StreamRule,
    check_limits,
    derive_stream_rules,
    diff_rules,
    parse_rules_response,
    parse_search_page,
    parse_stream_line,
    rule_errors,
    tweet_id,
)

log = structlog.get_logger(__name__)

# X's search returns 10 to 100 tweets per page.
SEARCH_PAGE_MIN = 10
SEARCH_PAGE_MAX = 100
# Failed REST attempts (5xx, network) before a rules sync or one backfill gives up.
REST_ATTEMPTS = 5


class StreamRuleConfig(Strict):
    """An explicit filtered-stream rule: X's query syntax, and an optional tag (shown as the channel)."""

    value: str = Field(min_length=1)
    tag: str | None = Field(default=None, min_length=1, max_length=128)


class BackfillConfig(Strict):
    enabled: bool = True
    # Posts fetched for one gap, across all rules (each costs read quota).
    max_posts: PositiveInt = 1000
    # Wait after reconnecting before searching, so search has indexed the end of the gap.
    delay: Duration = 10.0


class TwitterConfig(SourceConfig):
    type: Literal["twitter"] = "twitter"
    bearer_token: SecretStr | None = None
    bearer_tokens: list[SecretStr] = []
    mode: Literal["stream", "poll"] = "stream"
    api_base: str = DEFAULT_API_BASE
    stream_rules: list[StreamRuleConfig] | None = None
    exclude_retweets: bool = False
    # X's limits depend on the access level; the defaults are the Pro level's.
    max_rules: PositiveInt = 1000
    max_rule_length: PositiveInt = 1024
    max_query_length: PositiveInt = 512
    poll_interval: Duration = Field(default=60.0, ge=1.0)
    poll_max_posts: PositiveInt = 500
    stall_timeout: Duration = Field(default=20.0, gt=0)
    # A real-time read timeout under the stall watchdog, in case the loop itself is starved.
    read_timeout: Duration = Field(default=90.0, gt=0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    max_line_bytes: PositiveInt = 512 * 1024
    backfill: BackfillConfig = BackfillConfig()

    @property
    def tokens(self) -> list[SecretStr]:
        return ([self.bearer_token] if self.bearer_token is not None else []) + list(self.bearer_tokens)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> TwitterConfig:
        if not self.tokens:
            raise ValueError("give bearer_token or bearer_tokens (from the environment: '${X_BEARER_TOKEN}')")
        if any(not t.get_secret_value().strip() for t in self.tokens):
            raise ValueError("a bearer token is empty (is its environment variable set to nothing?)")
        if self.stream_rules is not None:
            rules = [StreamRule(r.value, r.tag) for r in self.stream_rules]
            try:
                check_limits(rules, max_rules=self.max_rules, max_length=self.wanted_length)
            except RuleProblem as exc:
                raise ValueError(f"stream_rules: {exc.message}") from None
        return self

    @property
    def wanted_length(self) -> int:
        """The longest rule usable: a poll sends each rule as a search query, whose limit is lower."""
        return self.max_query_length if self.mode == "poll" else self.max_rule_length

    def wanted_rules(self, rules: Sequence[RuleConfig], source: str) -> tuple[list[StreamRule], list[str]]:
        """The stream rules this source wants, and notes about daemon rules X cannot express.
        Raises `RuleProblem` (a configuration mistake) when the set is empty or over a limit."""
        notes: list[str] = []
        if self.stream_rules is not None:
            wanted = [StreamRule(r.value, r.tag) for r in self.stream_rules]
            path = f"sources[{source}].stream_rules"
        else:
            derived = derive_stream_rules(rules, source=source, exclude_retweets=self.exclude_retweets)
            wanted = list(derived.rules)
            notes = [f"rule {name!r}: {why}" for name, why in derived.skipped]
            path = "rules"
        if not wanted:
            raise RuleProblem(
                path,
                f"no stream rule for the twitter source {source!r}: no rule has keywords, cashtags, "
                "symbols or all_of for it; add such a rule or give the source stream_rules",
            )
        check_limits(wanted, max_rules=self.max_rules, max_length=self.wanted_length, path=path)
        return wanted, notes

    def check_rules(self, rules: Sequence[RuleConfig]) -> None:
        """For the config loader: raise `RuleProblem` (a ValueError with `.path`) if the daemon's
        rules give this source a rule set X would refuse, so `check-config` reports it at start-up."""
        self.wanted_rules(rules, self.instance_name)


def check_twitter_rules(config: TwitterConfig, rules: Sequence[RuleConfig]) -> None:
    """`config.check_rules(rules)` as a function."""
    config.check_rules(rules)


class TwitterSource(Source):
    config_class = TwitterConfig

    def __init__(self, config: TwitterConfig) -> None:
        super().__init__(config)
        self.settings = config
        self._rules: tuple[RuleConfig, ...] | None = None
        self._collector: _Collector | None = None

    async def run(self, ctx: SourceContext) -> None:
        collector = self._collector = _Collector(self.settings, ctx, self._rules or ctx.rules)
        try:
            await collector.run()
        finally:
            self._collector = None

    async def reload_rules(self, rules: Sequence[RuleConfig]) -> RuleDiff | None:
        """New daemon rules (SIGHUP): re-derive the stream rules and sync only what changed, without
        touching the connection. Raises `RuleProblem` for a rule set X would refuse (the running
        rules are kept). Returns the diff sent, or None when the source is not running."""
        self.settings.wanted_rules(rules, self.name)  # refuse before adopting
        self._rules = tuple(rules)
        if self._collector is None:
            return None
        return await self._collector.reload(self._rules)


class _Collector:
    """One run of the source: its connections, tokens, gaps and counters."""

    def __init__(self, cfg: TwitterConfig, ctx: SourceContext, rules: Sequence[RuleConfig]) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.name = ctx.name
        self.policy = ReconnectPolicy(jitter=cfg.jitter)
        self.tokens = [t.get_secret_value() for t in cfg.tokens]
        self.stream_tokens = TokenPool(len(self.tokens), self.policy)
        self.rest_tokens = TokenPool(len(self.tokens), self.policy)
        self.backoff = Backoff(self.policy)
        self.rules = rules
        self.wanted: list[StreamRule] = []
        self.rules_lock = asyncio.Lock()
        self.max_seen = self._resume_point(ctx.cursor)
        # The newest id seen before the oldest gap not yet backfilled; None: no gap open.
        self.pending_since: int | None = None
        self.backfilling = False
        self.gap = asyncio.Event()
        self.up = asyncio.Event()  # set while a stream connection is open
        self.stalled = False
        self.last_activity = 0.0
        self.busy = 0
        self.attempt_data = False
        self.attempt_up = asyncio.Event()
        self.stream_token: int | None = None
        self.disconnects: Counter[str] = Counter()
        self.stats: dict[str, Any] = {
            "stalls": 0,
            "backfills": 0,
            "backfilled_posts": 0,
            "gaps_not_backfilled": 0,
            "rule_syncs": 0,
            "stream_messages": 0,
        }
        self.last_backfill: dict[str, Any] | None = None
        self.search: Any = None
        self.rules_api: Any = None

    def _resume_point(self, cursor: str | None) -> int | None:
        if cursor is None:
            return None
        try:
            return int(tweet_id(cursor))
        except MalformedPayload:
            # Not an id we wrote: resuming from a guess could skip tweets, starting fresh cannot.
            log.warning("twitter cursor is not a tweet id; starting without it", source=self.name)
            return None

    def now(self) -> float:
        return self.ctx.clock.now().timestamp()

    # -- run -------------------------------------------------------------------------------------
    async def run(self) -> None:
        # tweepy logs request headers (the bearer token) at debug level; never let that through.
        tweepy_log = logging.getLogger("tweepy")
        if tweepy_log.getEffectiveLevel() < logging.INFO:
            tweepy_log.setLevel(logging.INFO)
        try:
            self.wanted, notes = self.cfg.wanted_rules(self.rules, self.name)
        except RuleProblem as exc:
            raise PermanentSourceError(f"config error: {exc.path}: {exc.message}") from None
        for note in notes:
            log.warning("rule not streamed from X", source=self.name, note=note)
        self.ctx.health.extra["mode"] = self.cfg.mode
        self._report()
        session = rewriting_session(self.cfg.api_base)
        try:
            self.search, self.rules_api = rest_clients(session)
            if self.cfg.mode == "poll":
                await self._poll_loop()
            else:
                await self._stream()
        finally:
            await session.close()

    async def reload(self, rules: Sequence[RuleConfig]) -> RuleDiff:
        self.rules = rules
        self.wanted, notes = self.cfg.wanted_rules(rules, self.name)
        for note in notes:
            log.warning("rule not streamed from X", source=self.name, note=note)
        self._report()
        if self.cfg.mode == "poll":
            return RuleDiff((), ())
        return await self._sync_rules()

    def _set_state(self, state: SourceState, error: str | None = None) -> None:
        self.ctx.set_state(state, error)
        self._report()

    def _report(self) -> None:
        now = self.now()
        stream = self.stream_tokens.snapshot(now)
        search = self.rest_tokens.snapshot(now)
        extra = self.ctx.health.extra
        extra["tokens"] = [
            {"token": s["token"], "stream": s, "rest": q} for s, q in zip(stream, search, strict=True)
        ]
        extra["rules"] = len(self.wanted)
        extra["cursor"] = self.ctx.cursor
        extra["gap_open"] = self.pending_since is not None or self.backfilling
        extra["disconnects"] = dict(self.disconnects)
        extra.update(self.stats)
        extra["last_backfill"] = self.last_backfill

    # -- the stream ------------------------------------------------------------------------------
    async def _stream(self) -> None:
        await self._sync_rules()
        if self.max_seen is not None:
            self._open_gap()  # a restart: fetch what was posted while we were down
        worker = asyncio.create_task(self._backfill_worker(), name=f"{self.name}:backfill")
        try:
            await self._stream_loop()
        finally:
            worker.cancel()
            await asyncio.wait({worker}, timeout=5)

    async def _stream_loop(self) -> None:
        stream = OneShotStream(
            base=self.cfg.api_base,
            events=self,
            read_timeout=self.cfg.read_timeout,
            max_line_bytes=self.cfg.max_line_bytes,
        )
        while True:
            index = await self._token(self.stream_tokens, "stream", report=True)
            self.stream_token = index
            self._set_state(SourceState.CONNECTING)
            result = await self._connection(stream, index)
            self.up.clear()
            self._open_gap()
            self.ctx.health.reconnected(result.failure.value if result.failure is not None else "ended")
            delay = self._after(result, index)
            if delay is None:
                continue  # another token is ready: rotate at once
            self._set_state(SourceState.BACKOFF, result.detail)
            log.warning(
                "twitter stream disconnected",
                source=self.name,
                reason=result.detail,
                retry_in_s=round(delay, 2),
            )
            await self.ctx.sleep(delay)

    def _after(self, result: AttemptResult, index: int) -> float | None:
        """How long to wait after this connection ended; None to reconnect with another token now."""
        failure = result.failure or Failure.NETWORK
        if isinstance(result.unexpected, LineTooLong):
            # A line over aiohttp's limit ends tweepy's read; the line is lost, the gap backfill
            # recovers the tweets after it.
            self.ctx.malformed(f"stream line over the read limit: {result.detail[:120]}")
        elif result.unexpected is not None:
            log.error("twitter stream task failed; reconnecting", source=self.name, error=result.detail)
        if failure is Failure.CLEAN_CLOSE and not self.attempt_data:
            failure = Failure.NETWORK  # accepted and dropped at once: do not spin
        if self.stalled:
            self.disconnects["stall"] += 1
        elif result.status in (None, 200):
            self.disconnects[failure.value] += 1
        else:
            self.disconnects[f"http_{result.status}"] += 1
        if result.status == 401:
            self.stream_tokens.rejected(index)
            log.error("twitter token rejected (401)", source=self.name, token=index + 1)
            return None
        if result.status == 403:
            raise PermanentSourceError(
                "the filtered stream answered HTTP 403: this app's X access level does not include it "
                "(or the app is not in a project); use mode: poll"
            )
        if failure is Failure.RATE_LIMITED:
            wait = self.stream_tokens.rate_limited(index, self.now(), self.ctx.rng)
            if self.stream_tokens.usable_others(index, self.now()):
                log.warning("twitter token rate limited; rotating", source=self.name, token=index + 1)
                return None
            return wait
        return self.backoff.next_delay(failure, self.ctx.rng)

    async def _connection(self, stream: OneShotStream, index: int) -> AttemptResult:
        """Run one connection until it ends, stalls, or we are cancelled (then close it first)."""
        self.stalled = False
        self.attempt_data = False
        self.attempt_up = asyncio.Event()
        self.last_activity = self.now()
        task = stream.start(
            self.tokens[index],
            expansions=list(EXPANSIONS),
            tweet_fields=list(TWEET_FIELDS),
            user_fields=list(USER_FIELDS),
        )
        watchdog = asyncio.create_task(self._watch(task), name=f"{self.name}:stall-watchdog")
        try:
            await asyncio.wait({task})
        finally:
            watchdog.cancel()
            if not task.done():
                # tweepy answers a cancel by closing its session, which closes the connection.
                task.cancel()
            await asyncio.wait({task, watchdog}, timeout=10)
            if stream.session is not None and not stream.session.closed:
                await stream.session.close()  # cancelled before tweepy's task ever ran
        if self.stalled:
            return AttemptResult(
                Failure.NETWORK, None, f"stalled: nothing received for {self.cfg.stall_timeout:g}s"
            )
        if stream.result is None:
            return AttemptResult(Failure.NETWORK, None, "stream task ended without a reason")
        return stream.result

    async def _watch(self, task: asyncio.Task[None]) -> None:
        """End the connection when neither data nor a keep-alive came for `stall_timeout`. Time on the
        injected clock; a handler waiting on a full inbox is not a stall."""
        timeout = self.cfg.stall_timeout
        await self.attempt_up.wait()  # before the 200, aiohttp's connect and read timeouts apply
        while not task.done():
            idle = 0.0 if self.busy else self.now() - self.last_activity
            if idle >= timeout:
                self.stalled = True
                self.stats["stalls"] += 1
                task.cancel()
                return
            await self.ctx.sleep(timeout - idle)

    # -- StreamEvents (called from tweepy's task; exceptions are caught there) ---------------------
    async def connected(self) -> None:
        self.last_activity = self.now()
        self.attempt_up.set()
        self.up.set()
        self._set_state(SourceState.CONNECTED)
        log.info("twitter stream connected", source=self.name, token=(self.stream_token or 0) + 1)

    async def keep_alive(self) -> None:
        self._activity()

    async def line(self, raw: bytes) -> None:
        self._activity()
        self.busy += 1
        try:
            try:
                message = parse_stream_line(
                    raw, source=self.name, received_at=self.ctx.clock.now(), max_bytes=self.cfg.max_line_bytes
                )
            except MalformedPayload as exc:
                self.ctx.malformed(str(exc))
                return
            if message.errors:
                self.stats["stream_messages"] += 1
                self.ctx.health.extra["last_stream_message"] = message.errors[0]
                log.warning("twitter stream message", source=self.name, errors=list(message.errors)[:3])
            if message.post is not None:
                await self._emit(message.post)
        finally:
            self.busy -= 1
            self.last_activity = self.now()

    def _activity(self) -> None:
        self.last_activity = self.now()
        if not self.attempt_data:
            # The connection works: X's backoff progressions start over.
            self.attempt_data = True
            self.backoff.reset()
            if self.stream_token is not None:
                self.stream_tokens.succeeded(self.stream_token)
            self._report()

    # -- posts and the cursor ----------------------------------------------------------------------
    async def _emit(self, post: Post) -> None:
        native = int(post.native_id)
        if self.max_seen is None or native > self.max_seen:
            self.max_seen = native
        if self.pending_since is not None or self.backfilling:
            await self.ctx.emit(post)  # inside an open gap the cursor waits for the backfill
        else:
            await self.ctx.emit(post, str(self.max_seen))

    def _open_gap(self) -> None:
        if not self.cfg.backfill.enabled or self.max_seen is None:
            return
        if self.pending_since is None:
            self.pending_since = self.max_seen
        self.gap.set()

    async def _backfill_worker(self) -> None:
        while True:
            await self.gap.wait()
            await self.up.wait()
            if self.cfg.backfill.delay:
                await self.ctx.sleep(self.cfg.backfill.delay)
            if not self.up.is_set():
                continue  # down again: the search must start after the stream is back
            self.gap.clear()
            since = self.pending_since
            self.pending_since = None
            if since is None:
                continue
            self.backfilling = True
            try:
                await self._backfill(since)
            except SourceError as exc:
                # Given up (search refused, or failing for long): the stream goes on, the cursor too.
                self.stats["gaps_not_backfilled"] += 1
                log.error("twitter gap not backfilled", source=self.name, since_id=str(since), error=str(exc))
            except Exception:
                # A bug here must not hold the cursor forever or take the stream down with it.
                self.stats["gaps_not_backfilled"] += 1
                log.exception("twitter backfill failed", source=self.name, since_id=str(since))
            finally:
                self.backfilling = False
            if self.pending_since is None and self.max_seen is not None:
                await self.ctx.advance(str(self.max_seen))
            self._report()

    async def _backfill(self, since: int) -> None:
        limit = self.cfg.backfill.max_posts
        found: dict[str, Post] = {}
        truncated = False
        for rule in list(self.wanted):
            if len(rule.value) > self.cfg.max_query_length:
                log.warning(
                    "stream rule too long for search; not backfilled", source=self.name, rule=rule.tag
                )
                continue
            remaining = limit - len(found)
            if remaining <= 0:
                truncated = True
                break
            posts, more = await self._search(rule, since_id=str(since), limit=remaining, report=False)
            truncated |= more
            for post in posts:
                found.setdefault(post.native_id, post)
        for post in sorted(found.values(), key=lambda p: int(p.native_id)):
            await self._emit(post)
        self.stats["backfills"] += 1
        self.stats["backfilled_posts"] += len(found)
        self.last_backfill = {
            "since_id": str(since),
            "posts": len(found),
            "truncated": truncated,
            "at": self.ctx.clock.now().isoformat(),
        }
        if truncated:
            log.warning(
                "twitter backfill stopped at its limit; older tweets of the gap are missing",
                source=self.name,
                since_id=str(since),
                limit=limit,
            )

    # -- polling -----------------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            since = self.max_seen
            # At most poll_max_posts a round, across rules; without a cursor only the newest page,
            # so a first start does not page through a week.
            limit = (
                self.cfg.poll_max_posts
                if since is not None
                else min(SEARCH_PAGE_MAX, self.cfg.poll_max_posts)
            )
            found: dict[str, Post] = {}
            truncated = False
            self.backfilling = True  # hold the cursor until every rule of this round is emitted
            try:
                for rule in list(self.wanted):
                    remaining = limit - len(found)
                    if remaining <= 0:
                        truncated = since is not None
                        break
                    posts, more = await self._search(
                        rule, since_id=None if since is None else str(since), limit=remaining, report=True
                    )
                    truncated |= more and since is not None
                    for post in posts:
                        found.setdefault(post.native_id, post)
                for post in sorted(found.values(), key=lambda p: int(p.native_id)):
                    await self._emit(post)
            finally:
                self.backfilling = False
            if found and self.max_seen is not None:
                await self.ctx.advance(str(self.max_seen))
            if truncated:
                log.warning("twitter poll hit poll_max_posts; some tweets were skipped", source=self.name)
            self._set_state(SourceState.CONNECTED)
            await self.ctx.sleep(self.cfg.poll_interval)

    # -- REST --------------------------------------------------------------------------------------
    async def _search(
        self, rule: StreamRule, *, since_id: str | None, limit: int, report: bool
    ) -> tuple[list[Post], bool]:
        """Up to `limit` tweets matching `rule` newer than `since_id`, newest first; and whether more
        were left."""
        posts: list[Post] = []
        next_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "max_results": min(SEARCH_PAGE_MAX, max(SEARCH_PAGE_MIN, limit - len(posts))),
                "expansions": list(EXPANSIONS),
                "tweet_fields": list(TWEET_FIELDS),
                "user_fields": list(USER_FIELDS),
            }
            if since_id is not None:
                params["since_id"] = since_id
            if next_token is not None:
                params["next_token"] = next_token

            async def call(token: str, params: dict[str, Any] = params) -> Any:
                self.search.bearer_token = token
                return await self.search.search_recent_tweets(rule.value, **params)

            payload = await self._rest("search", self.rest_tokens, call, report=report)
            try:
                page = parse_search_page(
                    payload, source=self.name, received_at=self.ctx.clock.now(), channel=rule.tag
                )
            except MalformedPayload as exc:
                self.ctx.malformed(f"search page: {exc}")
                return posts, False
            for reason in page.malformed:
                self.ctx.malformed(f"search result: {reason}")
            posts.extend(page.posts)
            if len(posts) >= limit:
                return posts[:limit], len(posts) > limit or page.next_token is not None
            if page.next_token is None:
                return posts, False
            next_token = page.next_token

    async def _sync_rules(self) -> RuleDiff:
        """Make X's rule set equal the wanted one, sending only the differences."""
        async with self.rules_lock:
            api = self.rules_api

            async def get(token: str) -> Any:
                api.bearer_token = token
                return await api.get_rules()

            try:
                active = parse_rules_response(await self._rest("rules", self.rest_tokens, get, report=True))
            except MalformedPayload as exc:
                raise TransientSourceError(f"unreadable stream rules from X: {exc}") from None
            diff = diff_rules(active, self.wanted)
            if diff.delete:

                async def delete(token: str) -> Any:
                    api.bearer_token = token
                    return await api.delete_rules(list(diff.delete))

                await self._rest("rules", self.rest_tokens, delete, report=True)
            if diff.add:

                async def add(token: str) -> Any:
                    api.bearer_token = token
                    return await api.add_rules([TweepyRule(value=r.value, tag=r.tag) for r in diff.add])

                refused = rule_errors(await self._rest("rules", self.rest_tokens, add, report=True))
                if refused:
                    raise PermanentSourceError(
                        "config error: X refused stream rules: " + "; ".join(refused)[:500]
                    )
            self.stats["rule_syncs"] += 1
            self._report()
            log.info(
                "twitter stream rules synced",
                source=self.name,
                rules=len(self.wanted),
                added=len(diff.add),
                deleted=len(diff.delete),
            )
            return diff

    async def _token(self, pool: TokenPool, what: str, *, report: bool) -> int:
        """A usable token of `pool`, waiting (on the injected sleep) while every one is benched."""
        while True:
            try:
                index, wait = pool.choose(self.now())
            except AllTokensRejected as exc:
                raise PermanentSourceError(f"{what}: {exc}; check bearer_tokens") from None
            if index is not None:
                return index
            if report:
                self._set_state(SourceState.BACKOFF, f"{what}: every token is rate limited")
            log.warning(
                "twitter tokens all rate limited", source=self.name, api=what, retry_in_s=round(wait, 1)
            )
            await self.ctx.sleep(wait)

    async def _rest(
        self, what: str, pool: TokenPool, call: Callable[[str], Awaitable[Any]], *, report: bool
    ) -> Any:
        """One REST call with token rotation and X's backoff; library errors mapped to ours."""
        backoff = Backoff(self.policy)
        failures = 0
        while True:
            index = await self._token(pool, what, report=report)
            try:
                result = await call(self.tokens[index])
            except tweepy_errors.Unauthorized:
                pool.rejected(index)
                log.error("twitter token rejected (401)", source=self.name, api=what, token=index + 1)
                continue
            except tweepy_errors.TooManyRequests as exc:
                reset = float(exc.reset_time) if exc.reset_time is not None else None
                wait = pool.rate_limited(index, self.now(), self.ctx.rng, reset_at=reset)
                log.warning(
                    "twitter rate limited", source=self.name, api=what, token=index + 1, wait_s=round(wait)
                )
                if not pool.usable_others(index, self.now()):
                    if report:
                        self._set_state(SourceState.BACKOFF, f"{what}: HTTP 429")
                    await self.ctx.sleep(wait)
                continue
            except (tweepy_errors.Forbidden, tweepy_errors.BadRequest, tweepy_errors.NotFound) as exc:
                raise PermanentSourceError(f"{what}: {_describe(exc)}") from None
            except (tweepy_errors.HTTPException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                failures += 1
                detail = _describe(exc)
                if failures >= REST_ATTEMPTS:
                    raise TransientSourceError(f"{what}: {detail}") from None
                failure = Failure.HTTP if isinstance(exc, tweepy_errors.HTTPException) else Failure.NETWORK
                delay = backoff.next_delay(failure, self.ctx.rng)
                if report:
                    self._set_state(SourceState.BACKOFF, f"{what}: {detail}")
                log.warning(
                    "twitter request failed", source=self.name, api=what, error=detail, retry_in_s=delay
                )
                await self.ctx.sleep(delay)
                continue
            pool.succeeded(index)
            return result


def _describe(exc: BaseException) -> str:
    """A one-line description of a library error (tweepy's carry X's messages; never a token)."""
    if isinstance(exc, tweepy_errors.HTTPException):
        status = getattr(exc.response, "status", None)
        messages = "; ".join(str(m) for m in exc.api_messages)[:200]
        return f"HTTP {status}" + (f": {messages}" if messages else "")
    return f"{type(exc).__name__}: {exc}"[:300]


def _build(config: BaseModel) -> TwitterSource:
    if not isinstance(config, TwitterConfig):
        raise TypeError(f"expected TwitterConfig, got {type(config).__name__}")
    return TwitterSource(config)


SOURCES.register("twitter", TwitterConfig, _build)
