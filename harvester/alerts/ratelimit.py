"""A token bucket per sink, driven by the injected clock: a chat channel stays readable in a storm."""

from __future__ import annotations

from harvester.config.alerts import RateLimitConfig


class TokenBucket:
    def __init__(self, config: RateLimitConfig, now: float) -> None:
        self.capacity = float(config.capacity)
        self.rate = config.refill_per_second
        self.tokens = self.capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 if one is)."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)
