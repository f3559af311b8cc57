"""The values the store takes and returns, and their mapping to and from table rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, NamedTuple

from harvester.models import Post, Signal

# Column order of `posts`, shared by the INSERT statement and `post_row`.
POST_COLUMNS = (
    "uid",
    "source",
    "native_id",
    "author",
    "text",
    "created_at",
    "received_at",
    "url",
    "channel",
    "lang",
    "likes",
    "reposts",
    "replies",
    "score",
    "followers",
    "rules",
    "sentiment",
)

OUTBOX_COLUMNS = (
    "key",
    "sink",
    "signal_id",
    "payload",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "last_error",
    "delivered_at",
    "group_key",
)

_NO_RULES = "[]"


class PostRecord(NamedTuple):
    """What the pipeline hands the store for one post: the post and what the engine made of it.

    A NamedTuple, not a frozen dataclass: one is built per stored post, and a frozen dataclass's
    `__init__` (an `object.__setattr__` call per field) costs several times as much."""

    post: Post
    rules: tuple[str, ...]  # names of the rules it matched (may be empty)
    sentiment: float | None  # VADER compound, if computed


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One alert in the outbox: written before the first send attempt, so none is lost in a crash."""

    key: str
    sink: str
    signal_id: str
    payload: str  # Alert.payload_json()
    status: str  # "pending" | "delivered" | "dead"
    attempts: int
    next_attempt_at: float
    created_at: float
    last_error: str | None
    delivered_at: float | None
    # The routing group (which includes the sink) of a grouped alert; None for rows without one.
    group_key: str | None = None


# The JSON text of each rule-name tuple seen: a handful of distinct tuples cover nearly every post.
_RULES_JSON: dict[tuple[str, ...], str] = {}
_RULES_JSON_MAX = 4096


def storable(text: str | None) -> str | None:
    """`text` as SQLite can store it: a lone UTF-16 surrogate (half of an emoji cut by a platform,
    which JSON can carry as "\ud83d") cannot be encoded as UTF-8 and would fail the whole batch, so
    it becomes U+FFFD. Any other string, nearly every one, is returned as it is."""
    if text is None or text.isascii():
        return text
    try:
        text.encode()  # strict UTF-8: fails only on a surrogate; cheaper than the round trip below
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def rules_json(rules: tuple[str, ...]) -> str:
    """The `rules` column: the names as a JSON array (cached per distinct tuple, up to a bound)."""
    if not rules:
        return _NO_RULES
    text = _RULES_JSON.get(rules)
    if text is None:
        text = json.dumps(list(rules))
        if len(_RULES_JSON) < _RULES_JSON_MAX:
            _RULES_JSON[rules] = text
    return text


def post_row(record: PostRecord) -> tuple[Any, ...]:
    """The `posts` row for `record`, in `POST_COLUMNS` order. Datetimes become epoch seconds."""
    p = record.post
    return (
        storable(p.uid),
        p.source,
        storable(p.native_id),
        storable(p.author),
        storable(p.text),
        p.created_at.timestamp(),
        p.received_at.timestamp(),
        storable(p.url),
        storable(p.channel),
        p.lang,
        p.likes,
        p.reposts,
        p.replies,
        p.score,
        p.followers,
        rules_json(record.rules),
        record.sentiment,
    )


def post_dict(row: sqlite3.Row) -> dict[str, Any]:
    """A stored post as a JSON-ready dict: the `posts` columns, with `rules` decoded to a list."""
    data = {name: row[name] for name in POST_COLUMNS}
    data["rules"] = json.loads(row["rules"])
    return data


def outbox_entry_from_row(row: sqlite3.Row) -> OutboxEntry:
    return OutboxEntry(
        key=row["key"],
        sink=row["sink"],
        signal_id=row["signal_id"],
        payload=row["payload"],
        status=row["status"],
        attempts=int(row["attempts"]),
        next_attempt_at=float(row["next_attempt_at"]),
        created_at=float(row["created_at"]),
        last_error=row["last_error"],
        delivered_at=None if row["delivered_at"] is None else float(row["delivered_at"]),
        group_key=row["group_key"],
    )


@dataclass(frozen=True, slots=True)
class StagedSignal:
    """A signal waiting in a routing group (`group_wait`) for the outbox row it will become part of."""

    group_key: str
    sink: str
    staged_at: float
    signal: Signal


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    """A silence created at run time. `ends_at` None means until someone expires it."""

    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float | None
    comment: str
    created_by: str
    created_at: float


def silence_from_row(row: sqlite3.Row) -> SilenceRecord:
    return SilenceRecord(
        id=row["id"],
        matchers=dict(json.loads(row["matchers"])),
        starts_at=float(row["starts_at"]),
        ends_at=None if row["ends_at"] is None else float(row["ends_at"]),
        comment=row["comment"],
        created_by=row["created_by"],
        created_at=float(row["created_at"]),
    )


def signal_row(signal: Signal) -> tuple[Any, ...]:
    """The `signals` row: the columns worth querying on, plus the whole signal as JSON."""
    return (
        signal.id,
        signal.rule,
        signal.kind,
        signal.severity.value,
        signal.at.timestamp(),
        json.dumps(signal.to_json(), sort_keys=True),
    )


def signal_from_row(row: sqlite3.Row) -> Signal:
    return Signal.from_json(json.loads(row["payload"]))
