"""Runs one collector and restarts it when it fails, with exponential backoff and full jitter.

A collector that raises is restarted after `uniform(0, min(cap, base * 2**n))` seconds (never less
than `floor`, so a collector that fails at once can never spin); the attempt counter resets once a
run has stayed up for `healthy_after` seconds. A `PermanentSourceError` (bad credentials, a missing
privilege) marks the source failed and is not retried: the rest of the daemon keeps running.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from harvester.errors import PermanentSourceError
from harvester.health import SourceState
from harvester.sources.base import Source, SourceContext

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base: float = 1.0
    cap: float = 300.0
    floor: float = 0.25
    healthy_after: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: a uniform draw below the exponential ceiling for `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return max(self.floor, rng.uniform(0.0, ceiling))


class Supervisor:
    def __init__(
        self,
        source: Source,
        ctx: SourceContext,
        *,
        policy: BackoffPolicy | None = None,
        monotonic: Callable[[], float] | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.ctx = ctx
        self.policy = policy or BackoffPolicy()
        self._monotonic = monotonic or (lambda: ctx.clock.now().timestamp())
        self._on_restart = on_restart
        self.attempt = 0
        self.delays: list[float] = []

    async def run(self) -> None:
        ctx, health = self.ctx, self.ctx.health
        while True:
            ctx.set_state(SourceState.CONNECTING)
            started = self._monotonic()
            try:
                await self.source.run(ctx)
            except asyncio.CancelledError:
                ctx.set_state(SourceState.STOPPED)
                raise
            except PermanentSourceError as exc:
                ctx.set_state(SourceState.FAILED, error=str(exc))
                log.error("source failed permanently; not retrying", source=ctx.name, error=str(exc))
                return
            except Exception as exc:
                if self._monotonic() - started >= self.policy.healthy_after:
                    self.attempt = 0
                self.attempt += 1
                reason = type(exc).__name__
                health.reconnected(f"restart: {reason}")
                if self._on_restart is not None:
                    self._on_restart(reason)
                delay = self.policy.delay(self.attempt, ctx.rng)
                self.delays.append(delay)
                ctx.set_state(SourceState.BACKOFF, error=f"{reason}: {exc}")
                log.warning(
                    "source failed; restarting",
                    source=ctx.name,
                    error=f"{reason}: {exc}",
                    attempt=self.attempt,
                    retry_in_s=round(delay, 2),
                )
                await ctx.sleep(delay)
                continue
            ctx.set_state(SourceState.FINISHED)
            log.info("source finished", source=ctx.name, posts=health.posts, malformed=health.malformed)
            return
