"""The values that flow through the pipeline: `Post` in, `Signal` from the engine, `Alert` from the router.

They are frozen dataclasses with slots: cheap to build on the hot path, safe to share between stages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# VADER's cost grows superlinearly with text length; one emoji-heavy 3,000-token comment can take
# seconds. Every parser caps text here so nothing downstream ever sees an unbounded string.
MAX_TEXT_CHARS = 2000


def cap_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Return `text` cut to at most `limit` characters."""
    return text if len(text) <= limit else text[:limit]


def utc(dt: datetime) -> datetime:
    """Return `dt` as an aware UTC datetime; naive values are taken to be UTC already."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Post:
    """One normalized item from any source.

    `uid` is globally unique ("<source>:<native id>") and is what dedup and the store key on.
    Engagement counts are `None` where the platform does not report them.
    """

    uid: str
    source: str
    native_id: str
    author: str
    text: str
    created_at: datetime
    received_at: datetime
    url: str | None = None
    channel: str | None = None
    lang: str | None = None
    likes: int | None = None
    reposts: int | None = None
    replies: int | None = None
    score: int | None = None
    followers: int | None = None
    # The uid of the post this one reposts, quotes or replies to, where the platform says.
    ref: str | None = None

    @staticmethod
    def make_uid(source: str, native_id: str) -> str:
        return f"{source}:{native_id}"

    @property
    def engagement(self) -> int:
        """A single engagement figure: the sum of the counts the platform reports."""
        return (self.likes or 0) + (self.reposts or 0) + (self.replies or 0) + (self.score or 0)


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}


@dataclass(frozen=True, slots=True)
class Signal:
    """Something a detector found: what, for which rule, how unusual, and the evidence behind it.

    `id` is deterministic (rule, kind, window start) so a detector re-firing for the same window after
    a restart yields the same id, which the alert outbox uses as its idempotency key.
    """

    id: str
    rule: str
    kind: str
    severity: Severity
    at: datetime
    window_start: datetime
    window_end: datetime
    observed: float
    baseline: float
    score: float
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def make_id(rule: str, kind: str, window_start: datetime) -> str:
        raw = f"{rule}\x1f{kind}\x1f{window_start.timestamp():.3f}"
        return hashlib.sha256(raw.encode()).hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "kind": self.kind,
            "severity": self.severity.value,
            "at": self.at.isoformat(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "observed": self.observed,
            "baseline": self.baseline,
            "score": self.score,
            "summary": self.summary,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signal:
        return cls(
            id=data["id"],
            rule=data["rule"],
            kind=data["kind"],
            severity=Severity(data["severity"]),
            at=datetime.fromisoformat(data["at"]),
            window_start=datetime.fromisoformat(data["window_start"]),
            window_end=datetime.fromisoformat(data["window_end"]),
            observed=float(data["observed"]),
            baseline=float(data["baseline"]),
            score=float(data["score"]),
            summary=data["summary"],
            evidence=dict(data.get("evidence") or {}),
        )

    @classmethod
    def from_json_text(cls, text: str) -> Signal:
        return cls.from_json(json.loads(text))


@dataclass(frozen=True, slots=True)
class Alert:
    """A signal addressed to one sink. `key` is the idempotency key: one alert per (signal, sink)."""

    key: str
    sink: str
    signal: Signal
    created_at: datetime

    @staticmethod
    def make_key(signal_id: str, sink: str) -> str:
        return f"{signal_id}:{sink}"

    def payload_json(self) -> str:
        return json.dumps(self.signal.to_json(), sort_keys=True)
