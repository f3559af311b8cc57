"""Reddit's Listing JSON turned into `Post`s: pure functions, no I/O.

What Reddit sends for `/r/{subs}/new`, `/r/{subs}/comments/` and `/api/info`:

    {"kind": "Listing", "data": {"after": ..., "before": ..., "children": [
        {"kind": "t3", "data": {"name": "t3_abc", "id": "abc", "title": ..., "selftext": ..., ...}},
        {"kind": "t1", "data": {"name": "t1_xyz", "body": ..., "parent_id": "t3_abc", ...}}]}}

Children come newest first. A submission (`t3`) becomes a post whose text is the title and the body
(`selftext`), with `score` and `replies` (= `num_comments`); a comment (`t1`) becomes a post whose text
is its body, whose `ref` is the post or comment it answers (so the viral detector counts the replies a
post draws) and whose `score` is its score. The native id is the *fullname* (`t3_abc`): submission and
comment ids are separate base-36 sequences, so the bare id could collide between the two kinds.

Fullnames matter beyond identity: within a kind, Reddit allocates ids in creation order, so the base-36
number after `t3_` grows with time. `fullname_number` exposes it; the collector uses it as a
high-water mark (nothing at or below the newest stored item is emitted again).

A child that cannot be turned into a post is reported, not raised, so one bad item never costs the
rest of its page: `parse_listing` returns `ListingChild(fullname, post=None, error=...)` for it, and the
collector counts it as malformed and still moves its cursor past it when the fullname is known.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeGuard

from harvester.errors import MalformedPayload
from harvester.models import Post, cap_text

# Where permalinks point: the public site, whatever API host the collector talks to.
PERMALINK_BASE: Final = "https://www.reddit.com"
KINDS: Final = ("t1", "t3")
_FULLNAME: Final = re.compile(r"(t[13])_([0-9a-z]{1,13})", re.ASCII)
# Counts end up in SQLite INTEGER columns (signed 64-bit).
_COUNT_LIMIT: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class ListingChild:
    """One child of a listing: its fullname when it has a valid one, and a post or the reason why not."""

    fullname: str | None
    post: Post | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ListingPage:
    """A parsed listing page, children in the order Reddit sent them (newest first)."""

    children: tuple[ListingChild, ...]
    after: str | None
    before: str | None


def fullname_number(fullname: str) -> int:
    """The base-36 number of a fullname (`t3_1a` -> 46): larger means created later, within a kind."""
    match = _FULLNAME.fullmatch(fullname)
    if match is None:
        raise MalformedPayload(f"not a submission or comment fullname: {_preview(fullname)}")
    return int(match.group(2), 36)


def is_fullname(value: object, kind: str | None = None) -> TypeGuard[str]:
    if not isinstance(value, str):
        return False
    match = _FULLNAME.fullmatch(value)
    return match is not None and (kind is None or match.group(1) == kind)


def parse_listing(
    payload: Mapping[str, object] | bytes | str,
    *,
    source: str,
    received_at: datetime,
    permalink_base: str = PERMALINK_BASE,
) -> ListingPage:
    """Parse a whole Listing. A payload that is not a Listing at all raises `MalformedPayload`; a bad
    child is returned as a `ListingChild` with `error` set."""
    document = _load(payload)
    if document.get("kind") != "Listing":
        raise MalformedPayload(f"expected a Listing, got kind {_preview(document.get('kind'))}")
    data = document.get("data")
    if not isinstance(data, Mapping):
        raise MalformedPayload("Listing without a data object")
    children = data.get("children")
    if not isinstance(children, list):
        raise MalformedPayload("Listing data without a children list")
    parsed = tuple(
        parse_child(child, source=source, received_at=received_at, permalink_base=permalink_base)
        for child in children
    )
    return ListingPage(parsed, _optional_fullname(data.get("after")), _optional_fullname(data.get("before")))


def parse_child(
    child: object, *, source: str, received_at: datetime, permalink_base: str = PERMALINK_BASE
) -> ListingChild:
    """One `{"kind": "t3"|"t1", "data": {...}}` child, never raising."""
    fullname: str | None = None
    try:
        if not isinstance(child, Mapping):
            raise MalformedPayload("listing child is not an object")
        data = child.get("data")
        if not isinstance(data, Mapping):
            raise MalformedPayload("listing child without a data object")
        name = data.get("name")
        if is_fullname(name):
            fullname = name
        kind = child.get("kind")
        if kind == "t3":
            post = parse_submission(
                data, source=source, received_at=received_at, permalink_base=permalink_base
            )
        elif kind == "t1":
            post = parse_comment(
                data, source=source, received_at=received_at, permalink_base=permalink_base
            )
        else:
            raise MalformedPayload(f"unexpected listing child kind {_preview(kind)}")
    except MalformedPayload as exc:
        return ListingChild(fullname, None, str(exc))
    return ListingChild(fullname, post)


def parse_submission(
    data: Mapping[str, object], *, source: str, received_at: datetime, permalink_base: str = PERMALINK_BASE
) -> Post:
    """A submission's `data` object -> Post (text = title, a blank line, then the body if any)."""
    fullname = _fullname(data, "t3")
    title = _text(data, "title", required=True)
    body = _text(data, "selftext")
    text = f"{title}\n\n{body}" if body else title
    crosspost = data.get("crosspost_parent")
    return Post(
        uid=Post.make_uid(source, fullname),
        source=source,
        native_id=fullname,
        author=_author(data),
        text=cap_text(text),
        created_at=_created(data),
        received_at=received_at,
        url=_permalink(data, permalink_base),
        channel=_subreddit(data),
        score=_count(data, "score"),
        replies=_count(data, "num_comments"),
        ref=Post.make_uid(source, crosspost) if is_fullname(crosspost, "t3") else None,
    )


def parse_comment(
    data: Mapping[str, object], *, source: str, received_at: datetime, permalink_base: str = PERMALINK_BASE
) -> Post:
    """A comment's `data` object -> Post; `ref` is the uid of what it replies to."""
    fullname = _fullname(data, "t1")
    parent = data.get("parent_id")
    return Post(
        uid=Post.make_uid(source, fullname),
        source=source,
        native_id=fullname,
        author=_author(data),
        text=cap_text(_text(data, "body", required=True)),
        created_at=_created(data),
        received_at=received_at,
        url=_permalink(data, permalink_base),
        channel=_subreddit(data),
        score=_count(data, "score"),
        ref=Post.make_uid(source, parent) if is_fullname(parent) else None,
    )


# --------------------------------------------------------------------------------------------------


def _load(payload: Mapping[str, object] | bytes | str) -> Mapping[str, object]:
    if isinstance(payload, Mapping):
        return payload
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedPayload(f"listing is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedPayload("listing is not a JSON object")
    return document


def _fullname(data: Mapping[str, object], kind: str) -> str:
    name = data.get("name")
    if is_fullname(name, kind):
        return name
    # Some payloads (and asyncpraw objects turned back into dicts) carry only the bare id.
    bare = data.get("id")
    if isinstance(bare, str) and is_fullname(f"{kind}_{bare}", kind):
        return f"{kind}_{bare}"
    raise MalformedPayload(f"{kind} without a valid name: {_preview(name)}")


def _text(data: Mapping[str, object], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise MalformedPayload(f"missing {key}")
        return ""
    if not isinstance(value, str):
        raise MalformedPayload(f"{key} must be a string, got {type(value).__name__}")
    return value


def _author(data: Mapping[str, object]) -> str:
    author = data.get("author")
    if author is None:
        return "[deleted]"
    if not isinstance(author, str):
        raise MalformedPayload(f"author must be a string, got {type(author).__name__}")
    return author


def _subreddit(data: Mapping[str, object]) -> str:
    sub = data.get("subreddit")
    if not isinstance(sub, str) or not sub:
        raise MalformedPayload(f"missing subreddit: {_preview(sub)}")
    return sub


def _created(data: Mapping[str, object]) -> datetime:
    value = data.get("created_utc")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedPayload(f"created_utc must be epoch seconds, got {_preview(value)}")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedPayload(f"created_utc out of range: {_preview(value)}") from None


def _count(data: Mapping[str, object], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedPayload(f"{key} must be a number, got {_preview(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise MalformedPayload(f"{key} must be an integer, got {_preview(value)}")
    count = int(value)
    if abs(count) > _COUNT_LIMIT:
        raise MalformedPayload(f"{key} out of range: {_preview(value)}")
    return count


def _permalink(data: Mapping[str, object], base: str) -> str | None:
    link = data.get("permalink")
    if not isinstance(link, str) or not link.startswith("/"):
        return None
    return base + link


def _optional_fullname(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _preview(value: object, limit: int = 40) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
