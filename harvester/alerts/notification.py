"""What a sink receives: an `Alert` (its lead signal) plus the rest of its routing group.

`Notification` subclasses `Alert`, so a sink written against the plain `Alert` contract (`alert.key`,
`alert.signal`) keeps working, while the built-in sinks also show the group and the example posts.
The outbox stores the group as a versioned JSON payload; rows written before grouping existed hold a
bare signal and still decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harvester.models import Alert, Signal

PAYLOAD_VERSION = 2


@dataclass(frozen=True, slots=True)
class ExamplePost:
    """One example post for a message, looked up in the store when the alert is sent."""

    uid: str
    author: str
    text: str
    url: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Notification(Alert):
    """One message to one sink: `signal` is the lead (most severe, then earliest) of `signals`."""

    signals: tuple[Signal, ...] = ()
    group_labels: dict[str, str] = field(default_factory=dict)
    examples: tuple[ExamplePost, ...] = ()
    dashboard_url: str | None = None
    attempt: int = 1


def lead_signal(signals: list[Signal] | tuple[Signal, ...]) -> Signal:
    """The signal a message leads with: the most severe, then the earliest."""
    return min(signals, key=lambda s: (-s.severity.rank, s.at, s.id))


def encode_group(signals: list[Signal] | tuple[Signal, ...], group_labels: dict[str, str]) -> str:
    document: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "group": dict(sorted(group_labels.items())),
        "signals": [s.to_json() for s in signals],
    }
    return json.dumps(document, sort_keys=True)


def decode_group(payload: str) -> tuple[tuple[Signal, ...], dict[str, str]]:
    """The signals and group labels of an outbox payload (either version)."""
    data = json.loads(payload)
    if isinstance(data, dict) and "signals" in data:
        signals = tuple(Signal.from_json(item) for item in data["signals"])
        return signals, {str(k): str(v) for k, v in dict(data.get("group") or {}).items()}
    return (Signal.from_json(data),), {}


def as_notification(alert: Alert) -> Notification:
    """Any alert as a `Notification` (a plain `Alert` becomes a group of one)."""
    if isinstance(alert, Notification):
        return alert
    return Notification(alert.key, alert.sink, alert.signal, alert.created_at, signals=(alert.signal,))
