"""What each part reports about itself, for logs now and for `/health` later."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class SourceState(StrEnum):
    STARTING = "starting"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    FAILED = "failed"
    FINISHED = "finished"  # a bounded source (a replay file) reached its end
    STOPPED = "stopped"


@dataclass
class SourceHealth:
    name: str
    type: str
    state: SourceState = SourceState.STARTING
    state_since: datetime | None = None
    last_error: str | None = None
    reconnects: int = 0
    posts: int = 0
    malformed: int = 0
    dropped: int = 0
    last_post_at: datetime | None = None
    extra: dict[str, object] = field(default_factory=dict)
    reconnect_reasons: dict[str, int] = field(default_factory=dict)  # reason -> count

    def reconnected(self, reason: str) -> None:
        """Count one reconnect (a supervisor restart, a dropped stream, a gateway session) and why."""
        self.reconnects += 1
        self.reconnect_reasons[reason] = self.reconnect_reasons.get(reason, 0) + 1

    def set_state(self, state: SourceState, now: datetime, error: str | None = None) -> None:
        if state is not self.state:
            self.state = state
            self.state_since = now
        if error is not None:
            self.last_error = error


class HealthRegistry:
    def __init__(self) -> None:
        self.sources: dict[str, SourceHealth] = {}

    def source(self, name: str, type_: str) -> SourceHealth:
        if name not in self.sources:
            self.sources[name] = SourceHealth(name=name, type=type_)
        return self.sources[name]
