"""Labelled events for backtests: when something really happened, and which rule should have said so.

`harvester replay FILE --onsets EVENTS` scores the signals of a replay against these labels. The file
is small and written by hand or exported from an incident log, so a mistake in it stops the run with
one line naming the line and the field, rather than silently dropping an event (which would make
the detection rate look better or worse than it is).

* **Formats.** CSV with a header row (`.csv`) or JSONL (one object per line; `.jsonl`, `.ndjson`);
  with another extension, a first non-blank character `{` means JSONL. UTF-8, a BOM is fine, blank
  lines are skipped.
* **Fields.** `name` (text), `onset` (ISO 8601; naive means UTC); optional `rule` (the rule expected
  to fire; absent or empty: any rule counts) and `end` (ISO 8601, after `onset`; absent or empty:
  `onset` plus the default event window). Other fields (a description, a source) are ignored.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from harvester.models import utc

REQUIRED_FIELDS = ("name", "onset")
_JSONL_EXTENSIONS = (".jsonl", ".ndjson")


class EventsFileError(ValueError):
    """The events file cannot be used; `str()` is the one line shown to the user."""


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    """A real event: a signal of `rule` (any rule when None) between `onset` and `end` detects it."""

    name: str
    onset: datetime
    end: datetime
    rule: str | None = None


def read_events(path: Path, *, default_window: float = 3600.0) -> list[LabelledEvent]:
    """Every event of `path`, in file order; raise `EventsFileError` on the first problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EventsFileError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EventsFileError(f"{path.name}: not UTF-8 (byte {exc.start})") from None
    records = _jsonl_records(text, path) if _is_jsonl(path, text) else _csv_records(text, path)
    events = [_event(record, where, default_window) for where, record in records]
    if not events:
        raise EventsFileError(f"{path.name}: no events in the file")
    return events


def _is_jsonl(path: Path, text: str) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return False
    if suffix in _JSONL_EXTENSIONS:
        return True
    return text.lstrip().startswith("{")


def _jsonl_records(text: str, path: Path) -> Iterator[tuple[str, Mapping[str, object]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EventsFileError(f"{where}: invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(value, dict):
            raise EventsFileError(f'{where}: expected a JSON object such as {{"name": ..., "onset": ...}}')
        yield where, value


def _csv_records(text: str, path: Path) -> Iterator[tuple[str, Mapping[str, object]]]:
    rows = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip() for cell in next(rows, [])]
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        found = ", ".join(header) if any(header) else "nothing"
        raise EventsFileError(f"{path.name}: the CSV header lacks {', '.join(missing)} (found: {found})")
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue
        # The reader counts physical lines, so this is right even after a quoted cell spanning lines.
        where = f"{path.name} line {rows.line_num}"
        if len(row) != len(header):
            raise EventsFileError(f"{where}: expected {len(header)} cells, got {len(row)}")
        # An empty cell means "absent", as in the replay format.
        yield where, {name: cell for name, cell in zip(header, row, strict=True) if cell.strip()}


def _event(record: Mapping[str, object], where: str, default_window: float) -> LabelledEvent:
    name = _text(record, "name", where)
    if name is None:
        raise EventsFileError(f"{where}: missing name")
    onset = _time(record, "onset", where)
    if onset is None:
        raise EventsFileError(f"{where}: missing onset")
    end = _time(record, "end", where)
    if end is None:
        end = onset + timedelta(seconds=default_window)
    elif end <= onset:
        raise EventsFileError(f"{where}: end {end.isoformat()} is not after onset {onset.isoformat()}")
    return LabelledEvent(name=name, onset=onset, end=end, rule=_text(record, "rule", where))


def _text(record: Mapping[str, object], field: str, where: str) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventsFileError(f"{where}: {field} must be text, got {json.dumps(value)}")
    return value.strip() or None


def _time(record: Mapping[str, object], field: str, where: str) -> datetime | None:
    value = _text(record, field, where)
    if value is None:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        raise EventsFileError(
            f"{where}: {field} must be an ISO 8601 time such as 2026-03-01T12:00:00Z, got {value!r}"
        ) from None
