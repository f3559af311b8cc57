"""The `synthetic` source: a realistic social stream that needs no API keys.

It feeds the demo (scenarios start 30 s in, so a new user sees alerts within a minute), the benchmark
(`pace: max`, as fast as the pipeline takes posts) and tests. What a post says comes from the pure
generator in `harvester.sources.synthetic_text`; this module decides when posts happen and reports.

The cursor is the sequence number of the last emitted post. A restart continues numbering after it,
so uids never repeat, and reseeds the generator from (seed, first sequence number) so a run is
reproducible.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

import structlog
from pydantic import BaseModel, Field, PositiveInt, field_validator, model_validator

from harvester.config.durations import Duration
from harvester.config.schema import SourceConfig, Strict
from harvester.health import SourceState
from harvester.models import utc
from harvester.plugins import SOURCES
from harvester.sources.base import Source, SourceContext
from harvester.sources.synthetic_text import (
    DEFAULT_START,
    SCENARIO_KINDS,
    Scenario,
    ScenarioKind,
    ScenarioPlan,
    StreamGenerator,
    slowest_rate_factor,
)

log = structlog.get_logger(__name__)

# Realtime pace emits in ticks of this many seconds: smooth enough for per-second windows, and no
# per-post sleep, so 100k posts/s is 5,000 posts per tick.
TICK_SECONDS = 0.05
# After a stall (a blocked inbox, a suspended VM) catch up at most this much; a synthetic stream has
# nothing real to catch up on, and a burst would only look like a spike.
MAX_CATCH_UP_SECONDS = 1.0
# Yield to the event loop after this many posts, so other tasks run while we produce flat out.
YIELD_EVERY = 256


class SyntheticScenarios(Strict):
    """When and how hard to inject events (crisis, pump, campaign, viral) into the stream."""

    enabled: bool = True
    first_after: Duration = 30.0
    every: Duration = Field(default=300.0, gt=0)
    duration: Duration = Field(default=90.0, gt=0)
    kinds: list[ScenarioKind] = Field(default_factory=lambda: list(SCENARIO_KINDS), min_length=1)
    intensity: float = Field(default=10.0, ge=1.0, le=1000.0)

    @model_validator(mode="after")
    def _one_at_a_time(self) -> SyntheticScenarios:
        if self.duration > self.every:
            raise ValueError(
                f"duration ({self.duration:g}s) must not exceed every ({self.every:g}s): "
                "scenarios cannot overlap"
            )
        return self

    def plan(self) -> ScenarioPlan:
        return ScenarioPlan(
            enabled=self.enabled,
            first_after=self.first_after,
            every=self.every,
            duration=self.duration,
            kinds=tuple(self.kinds),
            intensity=self.intensity,
        )


class SyntheticConfig(SourceConfig):
    type: Literal["synthetic"] = "synthetic"
    rate: float = Field(default=20.0, gt=0, le=100_000)  # average posts per second over a day
    seed: int = 42
    pace: Literal["realtime", "max"] = "realtime"
    limit: PositiveInt | None = None  # stop after this many posts (tests, benchmarks)
    start: datetime | None = None  # event-time origin for pace "max"; default DEFAULT_START
    scenarios: SyntheticScenarios = Field(default_factory=SyntheticScenarios)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)


def first_sequence(cursor: str | None) -> int:
    """The number of the next post: one after the committed cursor, or 1 on a fresh start."""
    if cursor is None:
        return 1
    try:
        return int(cursor) + 1
    except ValueError:
        # Guessing would risk reusing uids; a cursor we did not write is a permanent error.
        raise ValueError(f"synthetic cursor must be a sequence number, got {cursor!r}") from None


def resume_event_time(start: datetime, seq: int, rate: float, seed: int) -> float:
    """Where pace-max event time starts for post `seq`: `start` on a fresh run; after a restart, past
    anywhere the previous run can have reached, so event time never runs backwards (it may skip ahead).
    """
    return start.timestamp() + (seq - 1) / (rate * slowest_rate_factor(seed))


class SyntheticSource(Source):
    config_class = SyntheticConfig
    bounded = False  # `limit` is a test and benchmark aid; a configured stream runs until cancelled

    def __init__(self, config: SyntheticConfig) -> None:
        super().__init__(config)
        self.settings = config

    @property
    def event_time(self) -> bool:
        return self.settings.pace == "max"  # simulated time runs ahead of the wall clock

    async def run(self, ctx: SourceContext) -> None:
        seq = first_sequence(ctx.cursor)
        cfg = self.settings
        realtime = cfg.pace == "realtime"
        start = ctx.clock.now() if realtime else cfg.start or DEFAULT_START
        stream = StreamGenerator(
            seed=cfg.seed,
            source=self.name,
            rate=cfg.rate,
            origin=start.timestamp(),
            plan=cfg.scenarios.plan(),
            start_seq=seq,
            on_scenario=lambda scenario: self._report_scenario(ctx, scenario),
        )
        ctx.health.extra["scenario"] = None
        ctx.set_state(SourceState.CONNECTED)
        if realtime:
            await self._run_realtime(ctx, stream, seq)
        else:
            await self._run_max(ctx, stream, seq, resume_event_time(start, seq, cfg.rate, cfg.seed))
        ctx.set_state(SourceState.FINISHED)

    async def _run_realtime(self, ctx: SourceContext, stream: StreamGenerator, seq: int) -> None:
        """Event time is the clock: every tick, emit the posts the rate says are due since the last."""
        limit = self.settings.limit
        emitted = 0
        due = 0.0  # posts owed, carrying the fraction from tick to tick
        last = ctx.clock.now().timestamp()
        while limit is None or emitted < limit:
            await ctx.sleep(TICK_SECONDS)
            now = ctx.clock.now()
            ts = now.timestamp()
            elapsed = min(max(ts - last, 0.0), MAX_CATCH_UP_SECONDS)
            last = ts
            due += stream.rate_at(ts) * elapsed
            count = int(due)
            due -= count
            if limit is not None:
                count = min(count, limit - emitted)
            for i in range(count):
                post = stream.post(seq, ts, now, now)
                await ctx.emit(post, post.native_id)
                seq += 1
                if i % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            emitted += count

    async def _run_max(self, ctx: SourceContext, stream: StreamGenerator, seq: int, ts: float) -> None:
        """No sleeping: event time steps by 1 / rate per post, so the day and scenarios still unfold."""
        limit = self.settings.limit
        end = None if limit is None else seq + limit
        emit, post_at, rate_at = ctx.emit, stream.post, stream.rate_at  # hot loop: skip attribute lookups
        while seq != end:
            when = datetime.fromtimestamp(ts, UTC)
            post = post_at(seq, ts, when, when)
            await emit(post, post.native_id)
            ts += 1.0 / rate_at(ts)
            seq += 1
            if seq % YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _report_scenario(self, ctx: SourceContext, scenario: Scenario | None) -> None:
        if scenario is None:
            ctx.health.extra["scenario"] = None
            log.debug("synthetic scenario ended", source=self.name)
            return
        ctx.health.extra["scenario"] = scenario.as_dict()
        log.info(
            "synthetic scenario started",
            source=self.name,
            kind=scenario.kind,
            target=scenario.target,
            start=scenario.start.isoformat(),
            end=scenario.end.isoformat(),
        )


def _build(config: BaseModel) -> SyntheticSource:
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"expected SyntheticConfig, got {type(config).__name__}")
    return SyntheticSource(config)


SOURCES.register("synthetic", SyntheticConfig, _build)
