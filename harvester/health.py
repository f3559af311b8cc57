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

    def set_state(self, state: SourceState, now: datetime, error: str | None = None) -> None:
        if state is not self.state:
            self.state = state
            self.state_since = now
        if error is not None:
            self.last_error = error

    def as_dict(self, now: datetime) -> dict[str, object]:
        age = (now - self.last_post_at).total_seconds() if self.last_post_at else None
        return {
            "name": self.name,
            "type": self.type,
            "state": self.state.value,
            "state_since": self.state_since.isoformat() if self.state_since else None,
            "last_error": self.last_error,
            "reconnects": self.reconnects,
            "posts": self.posts,
            "malformed": self.malformed,
            "dropped": self.dropped,
            "last_post_age_s": age,
            **self.extra,
        }


class HealthRegistry:
    def __init__(self) -> None:
        self.sources: dict[str, SourceHealth] = {}

    def source(self, name: str, type_: str) -> SourceHealth:
        if name not in self.sources:
            self.sources[name] = SourceHealth(name=name, type=type_)
        return self.sources[name]
