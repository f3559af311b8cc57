"""The replay file format: recorded posts in JSONL or CSV, turned back into `Post`s.

This module is the reference for the format (the README describes it for users):

* **Files.** JSONL (one JSON object per line; `.jsonl`, `.ndjson`) or CSV with a header row (`.csv`).
  UTF-8, with or without a byte-order mark. Blank lines are skipped.
* **Required fields.** `id` (string or number), `text` (string), `created_at`: ISO 8601 with `Z`, with
  an offset, or naive (taken as UTC); or epoch *seconds* as a number or a numeric string, fractions
  allowed.
* **Optional fields.** `author`, `source`, `channel`, `lang`, `url` (strings), and the integer counts
  `likes`, `reposts`, `replies`, `score`, `followers` (`12`, `"12"` and `12.0` are all accepted, as
  spreadsheet and pandas exports write integers with missing values as floats; `12.5` is not).
  `source` defaults to the configured source name, `author` to `""`. A JSON `null`, and in CSV an
  empty cell, mean "absent" (so a CSV row with an empty `text` cell lacks its text, while the JSON
  `"text": ""` is an empty post). Any other field is ignored: real exports carry many.
* **Malformed.** A line that is not UTF-8, not JSON or not a JSON object, a CSV row with the wrong
  number of cells, or a record failing the rules above is reported with its position and skipped.
* **Post.** `uid` is `Post.make_uid(source, id)`; text is capped with `cap_text`.

Two layers, both free of asyncio so the backtest command and tests use them directly:
`parse_record` (one mapping -> `Post`, or `MalformedPayload`) and `read_records` (a file -> one
`ReplayItem` per line or row, with a cursor that resumes right after it). `read_posts` combines them.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import re
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

from harvester.errors import MalformedPayload
from harvester.models import Post, cap_text, utc
from harvester.wire.json_kind import json_kind

FORMATS: Final = ("auto", "jsonl", "csv")
EXTENSIONS: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
REQUIRED_FIELDS: Final = ("id", "text", "created_at")
COUNT_FIELDS: Final = ("likes", "reposts", "replies", "score", "followers")

# Counts end up in SQLite INTEGER columns, which are signed 64-bit.
_COUNT_MIN: Final = -(2**63)
_COUNT_MAX: Final = 2**63 - 1
# Epoch seconds as text: digits with an optional sign and fraction. ASCII only, because `float()` would
# also accept other scripts' digits, underscores, "nan" and "inf".
_EPOCH_TEXT: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?", re.ASCII)
# Epoch values this large are milliseconds (or microseconds), a common export mistake worth naming.
_EPOCH_MILLIS_HINT: Final = 1e11


# --------------------------------------------------------------------------------------------------
# One record -> Post


def parse_record(
    record: Mapping[str, object], *, default_source: str, received_at: datetime | None = None
) -> Post:
    """Build a `Post` from one replay record, or raise `MalformedPayload` saying what is wrong.

    `received_at` defaults to `created_at`: a replay runs in event time unless the caller says when
    the record was actually received.
    """
    native_id = _native_id(record.get("id"))
    text = record.get("text")
    if text is None:
        raise MalformedPayload("missing text")
    if not isinstance(text, str):
        raise MalformedPayload(f"text must be a string, got {json_kind(text)}")
    created_at = _timestamp(record.get("created_at"))
    source = _optional_text(record, "source") or default_source
    return Post(
        uid=Post.make_uid(source, native_id),
        source=source,
        native_id=native_id,
        author=_optional_text(record, "author") or "",
        text=cap_text(text),
        created_at=created_at,
        received_at=received_at or created_at,
        url=_optional_text(record, "url"),
        channel=_optional_text(record, "channel"),
        lang=_optional_text(record, "lang"),
        likes=_count(record, "likes"),
        reposts=_count(record, "reposts"),
        replies=_count(record, "replies"),
        score=_count(record, "score"),
        followers=_count(record, "followers"),
    )


def _native_id(value: object) -> str:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped:
            return stripped
        raise MalformedPayload("missing id")
    if value is None:
        raise MalformedPayload("missing id")
    if isinstance(value, bool):
        raise MalformedPayload("id must be a string or a number, got boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        # 123.0 is how some exporters write the integer id 123.
        return str(int(value)) if value.is_integer() else repr(value)
    raise MalformedPayload(f"id must be a string or a number, got {json_kind(value)}")


def _timestamp(value: object) -> datetime:
    """`created_at` as an aware UTC datetime, from ISO 8601 text or epoch seconds."""
    if value is None or value == "":
        raise MalformedPayload("missing created_at")
    if isinstance(value, bool):
        raise MalformedPayload("created_at must be a date string or epoch seconds, got boolean")
    if isinstance(value, int | float):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise MalformedPayload(f"created_at must be a date string or epoch seconds, got {json_kind(value)}")
    text = value.strip()
    if _EPOCH_TEXT.fullmatch(text):
        return _from_epoch(float(text))
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        raise MalformedPayload(f"unparsable created_at {_preview(value)}") from None
    except OverflowError:  # a valid local time whose UTC equivalent falls outside year 1..9999
        raise MalformedPayload(f"created_at out of range: {_preview(value)}") from None


def _from_epoch(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        hint = " (milliseconds? epoch seconds are expected)" if abs(seconds) >= _EPOCH_MILLIS_HINT else ""
        raise MalformedPayload(f"created_at out of range: {_preview(seconds)}{hint}") from None


def _optional_text(record: Mapping[str, object], name: str) -> str | None:
    """A short optional string field; numbers are accepted (an author id written as a number)."""
    value = record.get(name)
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise MalformedPayload(f"{name} must be a string, got {json_kind(value)}")


def _count(record: Mapping[str, object], name: str) -> int | None:
    value = record.get(name)
    if value is None:
        return None
    if type(value) is int:  # the common case first; `type() is` also keeps booleans out
        count = value
    elif isinstance(value, str):
        count = _count_from_text(value, name)
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    else:
        raise MalformedPayload(f"{name} must be an integer, got {_preview(value)}")
    if not _COUNT_MIN <= count <= _COUNT_MAX:
        raise MalformedPayload(f"{name} out of range: {_preview(value)}")
    return count


def _count_from_text(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise MalformedPayload(f"{name} must be an integer, got {_preview(value)}")
    return int(number)


def _preview(value: object, limit: int = 40) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# A file -> records, resumable


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """One line (JSONL) or row (CSV) of a replay file.

    `cursor` is the position just *after* this item: `read_records(start_after=cursor)` resumes with
    the next one. Exactly one of `record` and `error` is set. `where` says where the item starts
    ("byte 1234", "record 17"), for messages about it.
    """

    cursor: str
    record: dict[str, object] | None
    error: str | None
    where: str = ""


def detect_format(path: Path, fmt: str = "auto") -> str:
    """Return "jsonl" or "csv" for `path`: `fmt` itself, or for "auto" the one its extension names."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown replay format {fmt!r} (expected one of: {', '.join(FORMATS)})")
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        known = ", ".join(EXTENSIONS)
        raise ValueError(
            f"cannot tell the format of {path.name!r} from its extension (known: {known}); "
            "set the format to jsonl or csv"
        )
    return EXTENSIONS[suffix]


def read_records(
    path: Path, *, fmt: str = "auto", start_after: str | None = None
) -> Generator[ReplayItem, None, None]:
    """Yield one `ReplayItem` per non-blank line (JSONL) or data row (CSV) of `path`, in file order.

    JSONL cursors are byte offsets, so resuming a large file is a seek. CSV cursors count data rows
    (a quoted cell may span lines, so byte offsets would not be simpler), so resuming re-reads the rows
    before the cursor without parsing them into posts.

    A bad format, an unknown extension or a cursor that is not a position raise `ValueError` here; a
    cursor that no longer fits the file, or a CSV header without a required column, raise `ValueError`
    on the first `next()`. Problems with a single line or row are reported as items with `error` set.
    """
    resolved = detect_format(path, fmt)
    start = _parse_cursor(start_after)
    if resolved == "jsonl":
        return _jsonl_items(path, start)
    return _csv_items(path, start)


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit()):
        raise ValueError(f"replay cursor must be a non-negative integer, got {cursor!r}")
    return int(cursor)


def _jsonl_items(path: Path, start: int) -> Generator[ReplayItem, None, None]:
    with path.open("rb") as file:
        if start:
            _seek_to_line_start(file, start, path)
        offset = start
        for raw in file:
            begin = offset
            offset += len(raw)
            if raw.isspace():
                continue
            yield _jsonl_item(raw, begin, offset)


def _seek_to_line_start(file: BinaryIO, offset: int, path: Path) -> None:
    """Seek to a resume offset, checking it still falls where a line starts (the file may have changed)."""
    size = file.seek(0, 2)
    if offset < size:
        file.seek(offset - 1)
        at_line_start = file.read(1) == b"\n"
    else:
        # At the very end: fine (a last line without a newline ends there); beyond it: the file shrank.
        at_line_start = offset == size
    if not at_line_start:
        raise ValueError(
            f"cannot resume {path.name} at byte {offset}: that is not the start of a line "
            f"(file size {size}); was the file replaced or edited?"
        )
    file.seek(offset)


def _jsonl_item(raw: bytes, begin: int, end: int) -> ReplayItem:
    where = f"byte {begin}"
    cursor = str(end)
    if begin == 0 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ReplayItem(cursor, None, f"invalid UTF-8 at column {exc.start + 1}", where)
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return ReplayItem(cursor, None, f"invalid JSON: {exc.msg} at column {exc.colno}", where)
    except RecursionError:
        return ReplayItem(cursor, None, "invalid JSON: nested too deeply", where)
    if not isinstance(value, dict):
        return ReplayItem(cursor, None, f"expected a JSON object, got {json_kind(value)}", where)
    return ReplayItem(cursor, value, None, where)


def _csv_items(path: Path, start: int) -> Generator[ReplayItem, None, None]:
    # surrogateescape: an invalid byte spoils only its own row (reported below) instead of raising
    # UnicodeDecodeError from deep inside the csv module and ending the whole file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as file:
        rows = csv.reader(file)
        header = _csv_header(rows, path)
        number = 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a cell over the field size limit; the reader carries on after it
                number += 1
                if number > start:
                    yield ReplayItem(str(number), None, f"unreadable CSV row: {exc}", f"record {number}")
                continue
            if not row:
                continue  # a blank line
            number += 1
            # Rows up to the cursor are counted exactly as on the first read, then skipped unparsed.
            if number > start:
                yield _csv_item(header, row, number)


def _csv_header(rows: Iterator[list[str]], path: Path) -> list[str]:
    header = [name.strip() for name in next(rows, [])]
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        found = ", ".join(header) if header else "nothing"
        raise ValueError(f"{path.name}: the CSV header lacks {', '.join(missing)} (found: {found})")
    return header


def _csv_item(header: list[str], row: list[str], number: int) -> ReplayItem:
    where = f"record {number}"
    cursor = str(number)
    if len(row) != len(header):
        return ReplayItem(cursor, None, f"expected {len(header)} cells, got {len(row)}", where)
    try:
        "".join(row).encode("utf-8")  # fails only on bytes that `surrogateescape` smuggled in
    except UnicodeEncodeError:
        return ReplayItem(cursor, None, "invalid UTF-8", where)
    # An empty cell means "absent", like a JSON null.
    record: dict[str, object] = {name: cell for name, cell in zip(header, row, strict=True) if cell}
    return ReplayItem(cursor, record, None, where)


def read_posts(
    path: Path,
    *,
    fmt: str = "auto",
    default_source: str = "replay",
    start_after: str | None = None,
) -> Iterator[tuple[str, Post | None, str | None]]:
    """Yield `(cursor, post, None)` or `(cursor, None, reason)` for each record of `path`.

    Posts are in event time (`received_at == created_at`): this is what a backtest replays.
    """
    for item in read_records(path, fmt=fmt, start_after=start_after):
        post, error = parse_item(item, default_source=default_source)
        yield item.cursor, post, error


def parse_item(
    item: ReplayItem, *, default_source: str, received_at: datetime | None = None
) -> tuple[Post | None, str | None]:
    """Turn one `ReplayItem` into `(post, None)` or `(None, "where: reason")`."""
    if item.record is None:
        return None, f"{item.where}: {item.error}"
    try:
        return parse_record(item.record, default_source=default_source, received_at=received_at), None
    except MalformedPayload as exc:
        return None, f"{item.where}: {exc}"
