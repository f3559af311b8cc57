"""Silences: "do not alert on signals matching these labels until then". From the config, or created
and expired at run time (kept in the store, so they survive a restart)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from harvester.alerts.labels import matches
from harvester.config.alerts import SilenceEntryConfig
from harvester.store.records import SilenceRecord


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float | None  # None: until expired
    comment: str = ""
    created_by: str = ""
    origin: Literal["config", "api"] = "api"

    def active(self, now: float) -> bool:
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and matches(self.matchers, labels)

    def as_dict(self, now: float) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            if ts is None or not math.isfinite(ts):
                return None  # a config silence without starts_at has been on from the beginning
            return datetime.fromtimestamp(ts, UTC).isoformat()

        if self.ends_at is not None and now >= self.ends_at:
            state = "expired"
        else:
            state = "active" if self.active(now) else "pending"
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "origin": self.origin,
            "state": state,
        }

    def record(self, created_at: float) -> SilenceRecord:
        return SilenceRecord(
            self.id,
            dict(self.matchers),
            self.starts_at,
            self.ends_at,
            self.comment,
            self.created_by,
            created_at,
        )

    @classmethod
    def from_record(cls, record: SilenceRecord) -> Silence:
        return cls(
            record.id,
            dict(record.matchers),
            record.starts_at,
            record.ends_at,
            record.comment,
            record.created_by,
        )


def config_silences(entries: Iterable[SilenceEntryConfig]) -> list[Silence]:
    return [
        Silence(
            id=f"config-{index}",
            matchers=dict(entry.match),
            starts_at=entry.starts_at.timestamp() if entry.starts_at else float("-inf"),
            ends_at=entry.ends_at.timestamp() if entry.ends_at else None,
            comment=entry.comment,
            created_by="config",
            origin="config",
        )
        for index, entry in enumerate(entries)
    ]


def new_silence_id() -> str:
    return uuid.uuid4().hex[:16]
