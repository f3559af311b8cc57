"""The replay format (parser and reader) and the replay source: fields, malformed input, resume, pacing."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from harvester.clock import ManualClock
from harvester.errors import MalformedPayload, PermanentSourceError
from harvester.health import HealthRegistry, SourceState
from harvester.models import MAX_TEXT_CHARS, Post
from harvester.sources.base import Envelope, SourceContext
from harvester.sources.replay import MAX_PAUSE_SECONDS, ReplayConfig, ReplaySource
from harvester.wire.replay import COUNT_FIELDS, ReplayItem, parse_record, read_posts, read_records

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EPOCH_T0 = int(T0.timestamp())
CSV_HEADER = ["id", "text", "created_at", "author", "likes", "extra"]

# --------------------------------------------------------------------------------------------------
# Helpers


def write_jsonl(path: Path, lines: Sequence[dict[str, object] | str], *, final_newline: bool = True) -> Path:
    """Dicts become JSON lines; strings are written verbatim (for malformed lines)."""
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def good(n: int, *, at: datetime = T0) -> dict[str, object]:
    return {"id": n, "text": f"post {n}", "created_at": (at + timedelta(seconds=n)).isoformat()}


class Recorder:
    """A SourceContext `put` that keeps envelopes; cancels the replay at post number `stop_after` + 1."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.envelopes: list[Envelope] = []
        self.stop_after = stop_after
        self.on_put: Callable[[], None] | None = None

    async def put(self, envelope: Envelope) -> bool:
        if envelope.post is not None and self.stop_after is not None and len(self.posts) >= self.stop_after:
            raise asyncio.CancelledError  # the daemon stopping before this post was accepted
        if self.on_put is not None:
            self.on_put()
        self.envelopes.append(envelope)
        return True

    @property
    def posts(self) -> list[Post]:
        return [e.post for e in self.envelopes if e.post is not None]

    @property
    def last_cursor(self) -> str | None:
        cursors = [e.cursor for e in self.envelopes if e.cursor is not None]
        return cursors[-1] if cursors else None


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_ctx(
    recorder: Recorder, *, cursor: str | None = None, sleep: FakeSleep | None = None
) -> SourceContext:
    return SourceContext(
        name="replay",
        put=recorder.put,
        health=HealthRegistry().source("replay", "replay"),
        clock=ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        sleep=sleep or FakeSleep(),
        rng=random.Random(0),
        cursor=cursor,
    )


def make_source(path: Path, **options: object) -> ReplaySource:
    return ReplaySource(ReplayConfig.model_validate({"type": "replay", "path": path, **options}))


async def run_source(
    path: Path,
    recorder: Recorder,
    *,
    cursor: str | None = None,
    sleep: FakeSleep | None = None,
    **options: object,
) -> SourceContext:
    ctx = make_ctx(recorder, cursor=cursor, sleep=sleep)
    await make_source(path, **options).run(ctx)
    return ctx


def parse(record: dict[str, object]) -> Post:
    return parse_record(record, default_source="demo")


# --------------------------------------------------------------------------------------------------
# parse_record: fields


def test_every_field_of_a_json_record() -> None:
    record = {
        "id": "abc123",
        "text": "Launch day! $ACME",
        "created_at": "2024-03-01T12:00:00Z",
        "author": "alice",
        "source": "twitter",
        "channel": "#launch",
        "lang": "en",
        "url": "https://example.com/p/abc123",
        "likes": 5,
        "reposts": 2,
        "replies": 1,
        "score": -3,
        "followers": 1000,
        "retweeted_status": {"ignored": True},  # unknown fields are ignored
    }
    assert parse(record) == Post(
        uid="twitter:abc123",
        source="twitter",
        native_id="abc123",
        author="alice",
        text="Launch day! $ACME",
        created_at=T0,
        received_at=T0,
        url="https://example.com/p/abc123",
        channel="#launch",
        lang="en",
        likes=5,
        reposts=2,
        replies=1,
        score=-3,
        followers=1000,
    )


def test_defaults_for_absent_optional_fields() -> None:
    post = parse({"id": 42, "text": "hi", "created_at": EPOCH_T0, "lang": None, "likes": None})
    assert (post.uid, post.source, post.native_id, post.author) == ("demo:42", "demo", "42", "")
    assert (post.url, post.channel, post.lang) == (None, None, None)
    assert (post.likes, post.reposts, post.replies, post.score, post.followers) == (None,) * 5


def test_received_at_defaults_to_event_time_and_can_be_given() -> None:
    record = {"id": 1, "text": "x", "created_at": EPOCH_T0}
    assert parse(record).received_at == T0
    later = T0 + timedelta(days=1)
    assert parse_record(record, default_source="demo", received_at=later).received_at == later


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        (EPOCH_T0, T0),
        (EPOCH_T0 + 0.25, T0 + timedelta(seconds=0.25)),
        (str(EPOCH_T0), T0),
        (f" {EPOCH_T0}.5 ", T0 + timedelta(seconds=0.5)),
        ("2024-03-01T12:00:00Z", T0),
        ("2024-03-01T12:00:00.123456Z", T0 + timedelta(microseconds=123456)),
        ("2024-03-01T14:00:00+02:00", T0),
        ("2024-03-01T07:00:00-05:00", T0),
        ("2024-03-01T12:00:00", T0),  # naive means UTC
        ("2024-03-01 12:00:00", T0),
    ],
)
def test_created_at_forms(created_at: object, expected: datetime) -> None:
    post = parse({"id": 1, "text": "x", "created_at": created_at})
    assert post.created_at == expected
    assert post.created_at.tzinfo is UTC


def test_counts_accept_integral_numbers_and_numeric_text() -> None:
    post = parse(
        {
            "id": 1,
            "text": "x",
            "created_at": EPOCH_T0,
            "likes": "12",
            "reposts": 3.0,
            "replies": "4.0",
            "score": "-2",
        }
    )
    assert (post.likes, post.reposts, post.replies, post.score) == (12, 3, 4, -2)


def test_text_is_capped_and_numeric_author_kept_as_text() -> None:
    post = parse({"id": 1.0, "text": "x" * (MAX_TEXT_CHARS + 50), "created_at": EPOCH_T0, "author": 987})
    assert len(post.text) == MAX_TEXT_CHARS
    assert post.native_id == "1"
    assert post.author == "987"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"text": "x", "created_at": EPOCH_T0}, "missing id"),
        ({"id": "  ", "text": "x", "created_at": EPOCH_T0}, "missing id"),
        ({"id": True, "text": "x", "created_at": EPOCH_T0}, "id must be"),
        ({"id": {"a": 1}, "text": "x", "created_at": EPOCH_T0}, "id must be"),
        ({"id": float("nan"), "text": "x", "created_at": EPOCH_T0}, "id must be"),
        ({"id": 1, "created_at": EPOCH_T0}, "missing text"),
        ({"id": 1, "text": 5, "created_at": EPOCH_T0}, "text must be a string"),
        ({"id": 1, "text": "x"}, "missing created_at"),
        ({"id": 1, "text": "x", "created_at": "yesterday"}, "unparsable created_at"),
        ({"id": 1, "text": "x", "created_at": "2024-13-01T00:00:00"}, "unparsable created_at"),
        ({"id": 1, "text": "x", "created_at": False}, "created_at must be"),
        ({"id": 1, "text": "x", "created_at": [EPOCH_T0]}, "created_at must be"),
        ({"id": 1, "text": "x", "created_at": EPOCH_T0 * 1000}, "milliseconds"),
        ({"id": 1, "text": "x", "created_at": float("inf")}, "out of range"),
        ({"id": 1, "text": "x", "created_at": "0001-01-01T00:00:00+05:00"}, "out of range"),
        ({"id": 1, "text": "x", "created_at": EPOCH_T0, "likes": 1.5}, "likes must be an integer"),
        ({"id": 1, "text": "x", "created_at": EPOCH_T0, "likes": "many"}, "likes must be an integer"),
        ({"id": 1, "text": "x", "created_at": EPOCH_T0, "score": True}, "score must be an integer"),
        ({"id": 1, "text": "x", "created_at": EPOCH_T0, "followers": 2**70}, "followers out of range"),
        ({"id": 1, "text": "x", "created_at": EPOCH_T0, "author": {"name": "a"}}, "author must be a string"),
    ],
)
def test_malformed_records_say_why(record: dict[str, object], reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        parse(record)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)
FIELD_NAMES = st.sampled_from(
    ["id", "text", "created_at", "author", "source", "channel", "lang", "url", *COUNT_FIELDS]
)
DATE_LIKE = st.datetimes(timezones=st.none() | st.timezones()).map(datetime.isoformat) | st.from_regex(
    r"\A[+-]?[0-9]{1,25}(\.[0-9]*)?\Z"
)


@given(
    st.dictionaries(FIELD_NAMES | st.text(max_size=5), JSON_VALUES | DATE_LIKE, max_size=12),
)
def test_parse_record_raises_only_malformed_payload(record: dict[str, object]) -> None:
    try:
        post = parse_record(record, default_source="demo")
    except MalformedPayload:
        return
    assert post.created_at.tzinfo is UTC
    assert post.uid == f"{post.source}:{post.native_id}"


# --------------------------------------------------------------------------------------------------
# read_records / read_posts


def test_csv_rows_parse_like_json(tmp_path: Path) -> None:
    header = ["id", "text", "created_at", "author", "source", "channel", "lang", "url", *COUNT_FIELDS]
    path = write_csv(
        tmp_path / "export.csv",
        header,
        [
            [
                "a1",
                "line one\nline two, with comma",
                "2024-03-01T12:00:00Z",
                "alice",
                "reddit",
                "r/x",
                "en",
                "https://e.com/a1",
                "5",
                "2",
                "1",
                "-3",
                "1000",
            ],
            [7, "naive", "2024-03-01T12:00:00", "", "", "", "", "", "", "12.0", "", "", ""],
        ],
    )
    posts = [post for _, post, _ in read_posts(path, default_source="demo")]
    assert posts[0] == Post(
        uid="reddit:a1",
        source="reddit",
        native_id="a1",
        author="alice",
        text="line one\nline two, with comma",
        created_at=T0,
        received_at=T0,
        url="https://e.com/a1",
        channel="r/x",
        lang="en",
        likes=5,
        reposts=2,
        replies=1,
        score=-3,
        followers=1000,
    )
    assert posts[1] == Post(
        uid="demo:7",
        source="demo",
        native_id="7",
        author="",
        text="naive",
        created_at=T0,
        received_at=T0,
        reposts=12,
    )


def test_jsonl_reader_reports_each_bad_line_and_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "feed.ndjson"
    path.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(good(1)).encode() + b"\n"  # a byte-order mark is tolerated
        b"{not json\n"
        b"\n   \r\n"  # blank lines are skipped, not errors
        b"[1, 2]\n"
        b"42\n"
        b'{"id": 2, "text": "caf\xe9", "created_at": 0}\n'  # Latin-1, not UTF-8
         + json.dumps(good(3)).encode()  # no final newline
    )
    items = list(read_records(path))
    assert [item.record["id"] if item.record else None for item in items] == [1, None, None, None, None, 3]
    errors = [item.error for item in items if item.error]
    assert errors[0].startswith("invalid JSON")
    assert errors[1:] == [
        "expected a JSON object, got array",
        "expected a JSON object, got number",
        "invalid UTF-8 at column 23",
    ]
    assert items[-1].cursor == str(path.stat().st_size)


def test_csv_reader_reports_bad_rows_and_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(
        b"id,text,created_at,author,likes\r\n"
        b"1,one,0,,\r\n"
        b"2,too,many,cells,here,now\r\n"
        b"\r\n"
        b"3,short\r\n"
        b"4,caf\xe9,0,,\r\n"
        b"5,five,0,bob,3\r\n"
    )
    items = list(read_records(path))
    assert [item.cursor for item in items] == ["1", "2", "3", "4", "5"]
    assert [item.error for item in items] == [
        None,
        "expected 5 cells, got 6",
        "expected 5 cells, got 2",
        "invalid UTF-8",
        None,
    ]
    assert items[0].record == {"id": "1", "text": "one", "created_at": "0"}  # empty cells are absent
    assert items[4].record == {"id": "5", "text": "five", "created_at": "0", "author": "bob", "likes": "3"}


def test_read_posts_gives_reasons_with_positions(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [good(1), {"id": 2, "text": "no date"}, "oops"])
    results = list(read_posts(path, default_source="demo"))
    assert results[0][1] is not None and results[0][1].uid == "demo:1" and results[0][2] is None
    assert results[1][1] is None and results[1][2] is not None
    assert results[1][2].endswith(": missing created_at") and results[1][2].startswith("byte ")
    assert results[2][2] is not None and "invalid JSON" in results[2][2]


def test_format_and_extension_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "feed.txt", [good(1)])
    with pytest.raises(ValueError, match=r"cannot tell the format of 'feed.txt'"):
        read_records(path)
    with pytest.raises(ValueError, match=r"unknown replay format 'xml'"):
        read_records(path, fmt="xml")
    assert [item.record for item in read_records(path, fmt="jsonl")] == [good(1)]


def test_csv_header_without_required_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", ["id", "body", "time"], [[1, "x", 0]])
    with pytest.raises(ValueError, match="the CSV header lacks text, created_at"):
        list(read_records(path))


def test_cursor_that_does_not_fit_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [good(1), good(2)])
    with pytest.raises(ValueError, match="non-negative integer"):
        read_records(path, start_after="byte:3")
    with pytest.raises(ValueError, match="not the start of a line"):
        list(read_records(path, start_after="5"))
    with pytest.raises(ValueError, match="not the start of a line"):
        list(read_records(path, start_after=str(path.stat().st_size + 10)))


def resume_fixtures(tmp_path: Path) -> list[Path]:
    jsonl = write_jsonl(
        tmp_path / "r.jsonl",
        [good(1), "garbage", good(2), "", good(3), "[]", good(4), "{", "5"],  # ends with malformed lines
        final_newline=False,
    )
    rows: list[list[object]] = [
        [1, "a", EPOCH_T0, "", "", ""], [2, "multi\nline", EPOCH_T0, "", "", ""], [3, "bad", "x"],
        [4, "d", EPOCH_T0, "", "", ""], [5, "e", "not a date", "", "", ""], [6, "short"],
    ]  # fmt: skip
    return [jsonl, write_csv(tmp_path / "r.csv", CSV_HEADER, rows)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_reading_from_every_cursor_continues_with_the_next_item(tmp_path: Path, fmt: str) -> None:
    path = resume_fixtures(tmp_path)[0 if fmt == "jsonl" else 1]
    items = list(read_records(path))
    assert len(items) >= 6
    assert list(read_records(path, start_after=None)) == items
    for index, item in enumerate(items):
        assert list(read_records(path, start_after=item.cursor)) == items[index + 1 :]


LINES = st.lists(
    st.sampled_from(
        [good(1), "", " ", "{", "[]", '"x"', "a,b,c", '1,"multi\nline",0', "1,x,0", '2,"open', "\r"]
    )
    | st.text(max_size=12),
    max_size=10,
)


@given(LINES, st.sampled_from(["jsonl", "csv"]))
def test_any_content_resumes_exactly_from_every_cursor(
    lines: list[dict[str, object] | str], fmt: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:  # not tmp_path: one file per example
        path = Path(directory) / f"feed.{fmt}"
        if fmt == "csv":
            lines = ["id,text,created_at", *lines]
        write_jsonl(path, lines, final_newline=False)
        items = list(read_records(path))
        for index, item in enumerate(items):
            assert (item.record is None) != (item.error is None)
            assert list(read_records(path, start_after=item.cursor)) == items[index + 1 :]


def test_replay_item_is_frozen() -> None:
    item = ReplayItem("1", {"id": 1}, None)
    with pytest.raises(AttributeError):
        item.cursor = "2"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# ReplaySource


async def test_source_emits_good_posts_counts_malformed_and_finishes(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "f.jsonl",
        [good(1), "not json", good(2), {"id": 3, "text": "x", "created_at": "soon"}, good(4), "[]", "{"],
    )
    recorder = Recorder()
    states: list[SourceState] = []
    ctx = make_ctx(recorder)
    recorder.on_put = lambda: states.append(ctx.health.state)
    await make_source(path, name="demo").run(ctx)

    assert [p.uid for p in recorder.posts] == ["demo:1", "demo:2", "demo:4"]
    now = datetime(2026, 1, 1, tzinfo=UTC)  # the injected clock
    assert all(p.received_at == now for p in recorder.posts)
    assert ctx.health.malformed == 4
    assert ctx.health.posts == 3
    assert set(states) == {SourceState.CONNECTED}
    assert ctx.health.state is SourceState.FINISHED
    # The trailing malformed lines are committed with a cursor-only advance at the end of the file.
    assert recorder.envelopes[-1].post is None
    assert recorder.envelopes[-1].cursor == str(path.stat().st_size)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_stopping_anywhere_and_resuming_emits_every_post_exactly_once(tmp_path: Path, fmt: str) -> None:
    path = resume_fixtures(tmp_path)[0 if fmt == "jsonl" else 1]
    complete = Recorder()
    await run_source(path, complete)
    expected = [p.uid for p in complete.posts]
    assert len(expected) >= 3

    for stop_after in range(len(expected)):
        first = Recorder(stop_after=stop_after)
        with pytest.raises(asyncio.CancelledError):
            await run_source(path, first)
        second = Recorder()
        ctx = await run_source(path, second, cursor=first.last_cursor)
        assert [p.uid for p in first.posts + second.posts] == expected, f"stopped after {stop_after}"
        assert ctx.health.state is SourceState.FINISHED

    # Resuming from the end (a cursor past the trailing malformed records) replays and counts nothing.
    again = Recorder()
    ctx = await run_source(path, again, cursor=complete.last_cursor)
    assert again.envelopes == []
    assert ctx.health.malformed == 0


async def test_resuming_with_a_foreign_cursor_is_a_permanent_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [good(1), good(2)])
    with pytest.raises(PermanentSourceError, match="not the start of a line"):
        await run_source(path, Recorder(), cursor="3")
    with pytest.raises(PermanentSourceError, match="non-negative integer"):
        await run_source(path, Recorder(), cursor="abc")


async def test_speed_factor_sleeps_for_the_recorded_gap_divided_by_the_speed(tmp_path: Path) -> None:
    offsets = [0, 10, 10, 5, 40, 40 + 10_000, 40 + 10_001]  # equal, out of order, a long hole
    path = write_jsonl(
        tmp_path / "f.jsonl",
        [{"id": i, "text": "x", "created_at": EPOCH_T0 + s} for i, s in enumerate(offsets)],
    )
    sleep = FakeSleep()
    recorder = Recorder()
    await run_source(path, recorder, sleep=sleep, speed=10)
    assert len(recorder.posts) == len(offsets)
    assert sleep.delays == pytest.approx([1.0, 3.0, MAX_PAUSE_SECONDS, 0.1])


async def test_speed_max_never_sleeps_but_lets_other_tasks_run(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [good(n) for n in range(0, 3000, 3)])
    sleep = FakeSleep()
    recorder = Recorder()
    ticks: list[int] = []

    async def other_task() -> None:
        while True:
            ticks.append(len(recorder.envelopes))
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    try:
        await run_source(path, recorder, sleep=sleep)
    finally:
        task.cancel()
    assert len(recorder.posts) == 1000
    assert sleep.delays == []
    assert any(0 < seen < 1000 for seen in ticks), "the replay never yielded to the event loop"


async def test_csv_source_uses_the_configured_name_as_default_source(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", CSV_HEADER, [[1, "hello", EPOCH_T0, "bob", "7", "ignored"]])
    recorder = Recorder()
    await run_source(path, recorder, name="launch")
    (post,) = recorder.posts
    assert (post.uid, post.author, post.likes, post.created_at) == ("launch:1", "bob", 7, T0)
    assert recorder.envelopes[-1].cursor == "1"


# --------------------------------------------------------------------------------------------------
# Config and registration


def test_config_defaults_and_speed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [good(1)])
    config = ReplayConfig.model_validate({"type": "replay", "path": str(path)})
    assert (config.speed, config.format, config.instance_name) == ("max", "auto", "replay")
    assert ReplayConfig.model_validate({"path": str(path), "speed": 10}).speed == 10.0
    assert ReplayConfig.model_validate({"path": str(path), "speed": 0.5}).speed == 0.5
    # An explicit format makes any extension acceptable.
    other = write_jsonl(tmp_path / "f.txt", [good(1)])
    assert ReplayConfig.model_validate({"path": str(other), "format": "jsonl"}).format == "jsonl"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": 0}, "speed must be a positive number"),
        ({"speed": -2}, "speed must be a positive number"),
        ({"speed": "fast"}, "speed must be a positive number"),
        ({"speed": True}, "speed must be a positive number"),
        ({"speed": float("nan")}, "speed must be a positive number"),
        ({"format": "xml"}, "format"),
        ({"path": "/nonexistent/feed.jsonl"}, "file not found: /nonexistent/feed.jsonl"),
        ({"path": "."}, "not a file"),
        ({"path": "DATA/f.txt"}, "cannot tell the format of 'f.txt'"),
        ({"speeed": 2}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_rejected(tmp_path: Path, options: dict[str, object], message: str) -> None:
    write_jsonl(tmp_path / "f.jsonl", [good(1)])
    write_jsonl(tmp_path / "f.txt", [good(1)])
    data: dict[str, object] = {"type": "replay", "path": str(tmp_path / "f.jsonl"), **options}
    if isinstance(data["path"], str) and data["path"].startswith("DATA/"):
        data["path"] = str(tmp_path / data["path"].removeprefix("DATA/"))
    with pytest.raises(ValidationError, match=message):
        ReplayConfig.model_validate(data)


def test_replay_is_registered() -> None:
    from harvester.plugins import SOURCES

    plugin = SOURCES.get("replay")
    assert plugin.config_class is ReplayConfig
    assert plugin.factory is ReplaySource
    assert ReplaySource.bounded is True


def test_source_rejects_a_foreign_config() -> None:
    from harvester.config.schema import SourceConfig

    with pytest.raises(TypeError, match="needs a ReplayConfig"):
        ReplaySource(SourceConfig(type="replay"))
