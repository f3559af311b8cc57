"""X's reconnect policy and the bearer-token pool, as plain state machines with no I/O.

X documents how a filtered-stream client must reconnect, and an app that reconnects faster is locked
out. Per failure class, each with its own progression:

* the server closed a healthy stream cleanly: reconnect at once;
* network errors (refused, reset, a stall): linear, 250 ms more per attempt, up to 16 s;
* HTTP errors: exponential from 5 s, doubling, up to 320 s;
* HTTP 429: exponential from 60 s, doubling (capped at `rate_limit_max`, 16 min by default: a rate
  window is 15 min).

The progressions reset once a connection has delivered something (a tweet or a keep-alive), not on
the 200 alone: a server that accepts and drops at once must not be hammered. For the same reason a
clean close of a connection that delivered nothing counts as a network error. Every wait gets up to
`jitter` (a fraction) added, drawn from the injected random source, so many daemons do not reconnect
in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

# A sleep may end a hair before the instant it was computed for; a token benched "until t" is usable
# this close to t, instead of costing one more tiny sleep.
WAKE_TOLERANCE = 0.05


class Failure(StrEnum):
    CLEAN_CLOSE = "clean_close"
    NETWORK = "network"
    HTTP = "http"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    network_step: float = 0.25
    network_max: float = 16.0
    http_start: float = 5.0
    http_max: float = 320.0
    rate_limit_start: float = 60.0
    rate_limit_max: float = 960.0
    jitter: float = 0.1

    def nominal(self, failure: Failure, attempt: int) -> float:
        """The wait before reconnect number `attempt` (1-based) of this class, before jitter."""
        if failure is Failure.CLEAN_CLOSE:
            return 0.0
        if failure is Failure.NETWORK:
            return min(self.network_max, self.network_step * attempt)
        if failure is Failure.HTTP:
            return min(self.http_max, self.http_start * 2.0 ** (attempt - 1))
        return min(self.rate_limit_max, self.rate_limit_start * 2.0 ** (attempt - 1))


@dataclass(slots=True)
class Backoff:
    """The attempt counters of one connection, one per failure class."""

    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    attempts: dict[Failure, int] = field(default_factory=dict)

    def next_delay(self, failure: Failure, rng: random.Random) -> float:
        attempt = self.attempts.get(failure, 0) + 1
        self.attempts[failure] = attempt
        nominal = self.policy.nominal(failure, attempt)
        return nominal * (1.0 + self.policy.jitter * rng.random()) if nominal else 0.0

    def reset(self) -> None:
        self.attempts.clear()


class TokenStatus(StrEnum):
    READY = "ready"
    ACTIVE = "active"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"


@dataclass(slots=True)
class TokenState:
    index: int
    status: TokenStatus = TokenStatus.READY
    until: float | None = None  # epoch seconds when a rate-limited token may be used again
    rate_limited: int = 0  # consecutive 429s, for the doubling
    rejections: int = 0
    uses: int = 0


class AllTokensRejected(Exception):
    """Every token got a 401: nothing can work until the configuration changes."""


class TokenPool:
    """Which of several bearer tokens to use next. A 429 benches a token until its wait is over, a
    401 benches it for good (until the source restarts); the pool then moves to the next usable one.
    It never holds the tokens themselves, only indexes, so its state is safe to show in health."""

    def __init__(self, count: int, policy: ReconnectPolicy) -> None:
        if count < 1:
            raise ValueError("a token pool needs at least one token")
        self.policy = policy
        self.states = [TokenState(i) for i in range(count)]
        self.current = 0
        self.rotations = 0

    def choose(self, now: float) -> tuple[int | None, float]:
        """(index to use now, 0) or (None, seconds until one becomes usable). Prefers the current
        token, then the next ones in order. Raises `AllTokensRejected`."""
        count = len(self.states)
        earliest: float | None = None
        for step in range(count):
            index = (self.current + step) % count
            state = self.states[index]
            if state.status is TokenStatus.REJECTED:
                continue
            if (
                state.status is TokenStatus.RATE_LIMITED
                and state.until is not None
                and state.until > now + WAKE_TOLERANCE
            ):
                earliest = state.until if earliest is None else min(earliest, state.until)
                continue
            if index != self.current:
                self.rotations += 1
                if self.states[self.current].status is TokenStatus.ACTIVE:
                    self.states[self.current].status = TokenStatus.READY
            self.current = index
            if state.status is TokenStatus.RATE_LIMITED:
                state.until = None  # its wait is over; keep the count so a new 429 doubles
            state.status = TokenStatus.ACTIVE
            state.uses += 1
            return index, 0.0
        if earliest is None:
            raise AllTokensRejected("every bearer token was rejected by X (HTTP 401)")
        return None, earliest - now

    def succeeded(self, index: int) -> None:
        """The token worked (a stream delivered data, a request returned 2xx)."""
        state = self.states[index]
        state.rate_limited = 0
        if state.status is not TokenStatus.REJECTED:
            state.status = TokenStatus.ACTIVE if index == self.current else TokenStatus.READY

    def rate_limited(
        self, index: int, now: float, rng: random.Random, reset_at: float | None = None
    ) -> float:
        """Bench the token after a 429 and return how long it waits: X's 60 s doubling, or until the
        server's reset time if that is later (bounded by the policy's cap)."""
        state = self.states[index]
        state.rate_limited += 1
        wait = self.policy.nominal(Failure.RATE_LIMITED, state.rate_limited)
        wait *= 1.0 + self.policy.jitter * rng.random()
        if reset_at is not None:
            wait = max(wait, min(reset_at - now, self.policy.rate_limit_max))
        state.status = TokenStatus.RATE_LIMITED
        state.until = now + wait
        return wait

    def rejected(self, index: int) -> None:
        state = self.states[index]
        state.rejections += 1
        state.status = TokenStatus.REJECTED
        state.until = None

    def usable_others(self, index: int, now: float) -> bool:
        """Whether another token could be used right now (so a rotation beats waiting)."""
        return any(
            s.index != index
            and s.status is not TokenStatus.REJECTED
            and (s.status is not TokenStatus.RATE_LIMITED or s.until is None or s.until <= now)
            for s in self.states
        )

    def snapshot(self, now: float) -> list[dict[str, object]]:
        """Per token: its position (never its value), status, and remaining wait."""
        out: list[dict[str, object]] = []
        for s in self.states:
            wait = max(0.0, s.until - now) if s.until is not None else None
            status = s.status
            if status is TokenStatus.RATE_LIMITED and wait == 0.0:
                status = TokenStatus.READY
            out.append(
                {
                    "token": s.index + 1,
                    "status": status.value,
                    "retry_in_s": round(wait, 1) if wait else None,
                    "rate_limited": s.rate_limited,
                    "rejections": s.rejections,
                    "uses": s.uses,
                }
            )
        return out
