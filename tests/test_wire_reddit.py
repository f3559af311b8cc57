"""The pure Reddit Listing parser, on recorded-style payloads (no sockets)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from harvester.errors import MalformedPayload
from harvester.models import MAX_TEXT_CHARS
from harvester.wire.reddit import (
    fullname_number,
    is_fullname,
    parse_child,
    parse_comment,
    parse_listing,
    parse_submission,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# Trimmed from the shape of a real /r/{sub}/new child (many more fields are present and ignored).
SUBMISSION: dict[str, Any] = {
    "approved_at_utc": None,
    "subreddit": "wallstreetbets",
    "selftext": "Earnings tomorrow, thoughts?",
    "author_fullname": "t2_abc12",
    "title": "$ACME puts printing",
    "subreddit_name_prefixed": "r/wallstreetbets",
    "name": "t3_1h2k3l4",
    "score": 1234,
    "thumbnail": "self",
    "created": 1767225600.0,
    "id": "1h2k3l4",
    "author": "diamond_hands",
    "num_comments": 321,
    "permalink": "/r/wallstreetbets/comments/1h2k3l4/acme_puts_printing/",
    "url": "https://www.reddit.com/r/wallstreetbets/comments/1h2k3l4/acme_puts_printing/",
    "created_utc": 1767225600.0,
    "over_18": False,
}
COMMENT: dict[str, Any] = {
    "subreddit_id": "t5_2th52",
    "link_title": "$ACME puts printing",
    "subreddit": "wallstreetbets",
    "link_author": "diamond_hands",
    "id": "m1a2b3c",
    "author": "paper_hands",
    "parent_id": "t3_1h2k3l4",
    "score": 17,
    "body": "sir this is a casino",
    "link_id": "t3_1h2k3l4",
    "name": "t1_m1a2b3c",
    "permalink": "/r/wallstreetbets/comments/1h2k3l4/acme_puts_printing/m1a2b3c/",
    "created_utc": 1767225700,
}


def listing(*children: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Listing", "data": {"after": None, "before": None, "dist": len(children),
                                        "children": list(children)}}


def test_submission_fields() -> None:
    post = parse_submission(SUBMISSION, source="reddit", received_at=NOW)
    assert post.uid == "reddit:t3_1h2k3l4"
    assert post.native_id == "t3_1h2k3l4"
    assert post.text == "$ACME puts printing\n\nEarnings tomorrow, thoughts?"
    assert post.author == "diamond_hands"
    assert post.channel == "wallstreetbets"
    assert post.score == 1234
    assert post.replies == 321
    assert post.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert post.received_at == NOW
    assert post.url == "https://www.reddit.com/r/wallstreetbets/comments/1h2k3l4/acme_puts_printing/"
    assert post.ref is None


def test_link_submission_is_title_only_and_crosspost_is_a_ref() -> None:
    data = {**SUBMISSION, "selftext": "", "crosspost_parent": "t3_zz9"}
    post = parse_submission(data, source="r", received_at=NOW)
    assert post.text == "$ACME puts printing"
    assert post.ref == "r:t3_zz9"


def test_comment_fields_and_parent_ref() -> None:
    post = parse_comment(COMMENT, source="reddit", received_at=NOW)
    assert post.uid == "reddit:t1_m1a2b3c"
    assert post.text == "sir this is a casino"
    assert post.ref == "reddit:t3_1h2k3l4"
    assert post.score == 17
    assert post.replies is None
    assert post.created_at == datetime.fromtimestamp(1767225700, UTC)
    assert post.url is not None and post.url.endswith("/m1a2b3c/")


def test_deleted_author_and_bare_id() -> None:
    data = {**COMMENT, "author": None}
    del data["name"]
    post = parse_comment(data, source="reddit", received_at=NOW)
    assert post.author == "[deleted]"
    assert post.native_id == "t1_m1a2b3c"


def test_text_is_capped() -> None:
    post = parse_comment({**COMMENT, "body": "x" * 10_000}, source="r", received_at=NOW)
    assert len(post.text) == MAX_TEXT_CHARS


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "t9_x", "id": None}, "valid name"),
        ({"body": None}, "missing body"),
        ({"body": 5}, "body must be a string"),
        ({"created_utc": "yesterday"}, "created_utc"),
        ({"created_utc": float("nan")}, "created_utc"),
        ({"created_utc": 1e20}, "out of range"),
        ({"score": 1.5}, "score must be an integer"),
        ({"score": True}, "score must be a number"),
        ({"subreddit": None}, "missing subreddit"),
        ({"author": ["x"]}, "author must be a string"),
    ],
)
def test_malformed_comment(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        parse_comment({**COMMENT, **change}, source="r", received_at=NOW)


def test_listing_keeps_order_and_reports_bad_children() -> None:
    bad = {"kind": "t1", "data": {**COMMENT, "name": "t1_zzz", "body": None}}
    page = parse_listing(
        listing({"kind": "t3", "data": SUBMISSION}, bad, {"kind": "t1", "data": COMMENT}, {"kind": "more"}),
        source="reddit",
        received_at=NOW,
    )
    assert [c.fullname for c in page.children] == ["t3_1h2k3l4", "t1_zzz", "t1_m1a2b3c", None]
    assert page.children[0].post is not None and page.children[2].post is not None
    assert page.children[1].post is None and page.children[1].error == "missing body"
    assert page.children[3].post is None and page.children[3].error is not None


def test_listing_from_bytes_and_cursors() -> None:
    doc = listing({"kind": "t1", "data": COMMENT})
    doc["data"]["after"] = "t1_m1a2b3c"
    page = parse_listing(json.dumps(doc).encode(), source="reddit", received_at=NOW)
    assert page.after == "t1_m1a2b3c" and page.before is None
    assert len(page.children) == 1


@pytest.mark.parametrize(
    "payload",
    [b"<html>busy</html>", b"[1,2]", {"kind": "t3"}, {"kind": "Listing"}, {"kind": "Listing", "data": {}}],
)
def test_not_a_listing(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse_listing(payload, source="reddit", received_at=NOW)


def test_child_never_raises() -> None:
    for child in (None, 3, {"kind": "t3"}, {"kind": "t3", "data": []}):
        result = parse_child(child, source="r", received_at=NOW)
        assert result.post is None and result.error


def test_fullname_numbers_grow_with_base36() -> None:
    assert fullname_number("t3_z") == 35
    assert fullname_number("t3_10") == 36
    assert fullname_number("t1_1h2k3l4") > fullname_number("t1_zzzzzz")
    assert is_fullname("t3_abc", "t3") and not is_fullname("t3_abc", "t1") and not is_fullname(5)
    with pytest.raises(MalformedPayload):
        fullname_number("t2_abc")
