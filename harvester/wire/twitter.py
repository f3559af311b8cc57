"""X (Twitter) API v2 payloads as pure functions: stream lines and search pages to `Post`s, and
harvester rules to filtered-stream rules. No I/O here, so every case is tested on recorded-style
payloads without a socket.

* **Tweets.** A v2 tweet object plus the `includes` it came with (users for the author's username and
  follower count, referenced tweets for the full text of a retweet). The uid is
  `<source>:<tweet id>`; `ref` is the uid of the tweet it retweets, quotes or replies to (in that order
  of preference). A missing `created_at` is read from the id itself (ids are snowflakes that carry
  their creation time), so a tweet never needs to be dropped for lacking it.
* **Stream lines.** One JSON object per line: a tweet (`data`), system messages (`errors`, such as an
  operational disconnect), or both. `matching_rules` entries may lack a `tag`. Anything that is not a
  JSON object holding a valid tweet or errors raises `MalformedPayload`.
* **Rules.** Each harvester rule that applies to the source becomes one stream rule whose tag is the
  rule's name: keywords, cashtags and symbols ORed, `all_of` ANDed, `exclude` negated, `langs` as
  `lang:` operators. X cannot run regular expressions or match everything, so a rule with nothing
  else is reported as not streamable rather than silently turned into something broader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from harvester.config.rules import RuleConfig
from harvester.errors import MalformedPayload
from harvester.models import Post, cap_text, utc
from harvester.wire.json_kind import json_kind

# What the stream and the search ask for, so a Post can be complete without another request.
EXPANSIONS: Final = ("author_id", "referenced_tweets.id", "referenced_tweets.id.author_id")
TWEET_FIELDS: Final = (
    "author_id",
    "created_at",
    "lang",
    "public_metrics",
    "conversation_id",
    "referenced_tweets",
    "note_tweet",
    "entities",
)
USER_FIELDS: Final = ("username", "public_metrics")

# Twitter's epoch for snowflake ids (2010-11-04T01:42:54.657Z), in milliseconds.
SNOWFLAKE_EPOCH_MS: Final = 1288834974657
# X sends language codes for "undetermined", "no linguistic content" and a few media-only cases:
# none of them is a language a rule's `langs` could mean.
_NOT_LANGUAGES: Final = frozenset({"und", "zxx", "qme", "qam", "qct", "qht", "qst"})
_REFERENCE_ORDER: Final = ("retweeted", "quoted", "replied_to")
_DIGITS: Final = re.compile(r"[0-9]{1,20}", re.ASCII)


# --------------------------------------------------------------------------------------------------
# Tweets -> Post


@dataclass(frozen=True, slots=True)
class Includes:
    """The `includes` of a response, indexed by id for lookups while parsing its tweets."""

    users: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    tweets: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, includes: object) -> Includes:
        """Index `includes`; malformed entries are ignored (they only enrich a post, never make it)."""
        if not isinstance(includes, Mapping):
            return cls()
        return cls(users=_index(includes.get("users")), tweets=_index(includes.get("tweets")))


def _index(items: object) -> dict[str, Mapping[str, object]]:
    out: dict[str, Mapping[str, object]] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                out[str(item["id"])] = item
    return out


def tweet_id(value: object) -> str:
    """A tweet id as X sends it (a string of digits), or `MalformedPayload`."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)  # v1-style numeric ids; v2 sends strings
    raise MalformedPayload(f"tweet id must be a string of digits, got {_preview(value)}")


def snowflake_time(native_id: str) -> datetime:
    """When a tweet with this id was created (the id's top bits count milliseconds since X's epoch)."""
    millis = (int(native_id) >> 22) + SNOWFLAKE_EPOCH_MS
    return datetime.fromtimestamp(millis / 1000, UTC)


def tweet_to_post(
    tweet: object,
    includes: Includes,
    *,
    source: str,
    received_at: datetime,
    channel: str | None = None,
) -> Post:
    """One v2 tweet object -> `Post`, or `MalformedPayload` naming what is wrong."""
    if not isinstance(tweet, Mapping):
        raise MalformedPayload(f"tweet must be an object, got {json_kind(tweet)}")
    native_id = tweet_id(tweet.get("id"))
    text = _text_of(tweet)
    author_id = tweet.get("author_id")
    user = includes.users.get(author_id) if isinstance(author_id, str) else None
    username = _string(user.get("username")) if user is not None else None
    ref_type, ref_id = _reference(tweet)
    if ref_type == "retweeted" and ref_id is not None:
        # A retweet's own text is cut ("RT @x: ..." to 140 characters); the original is in includes.
        text = _retweet_text(text, includes.tweets.get(ref_id), includes)
    metrics = tweet.get("public_metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    user_metrics = user.get("public_metrics") if user is not None else None
    user_metrics = user_metrics if isinstance(user_metrics, Mapping) else {}
    reposts = _count(metrics, "retweet_count")
    quotes = _count(metrics, "quote_count")
    if quotes is not None:
        reposts = (reposts or 0) + quotes
    lang = _string(tweet.get("lang"))
    return Post(
        uid=Post.make_uid(source, native_id),
        source=source,
        native_id=native_id,
        author=username or (author_id if isinstance(author_id, str) else ""),
        text=cap_text(text),
        created_at=_created_at(tweet.get("created_at"), native_id),
        received_at=received_at,
        url=f"https://x.com/{username or 'i'}/status/{native_id}",
        channel=channel,
        lang=None if lang is None or lang in _NOT_LANGUAGES else lang,
        likes=_count(metrics, "like_count"),
        reposts=reposts,
        replies=_count(metrics, "reply_count"),
        followers=_count(user_metrics, "followers_count"),
        ref=Post.make_uid(source, ref_id) if ref_id is not None else None,
    )


def _text_of(tweet: Mapping[str, object]) -> str:
    note = tweet.get("note_tweet")  # posts over 280 characters carry their full text here
    if isinstance(note, Mapping) and isinstance(note.get("text"), str):
        return str(note["text"])
    text = tweet.get("text")
    if text is None:
        raise MalformedPayload("missing text")
    if not isinstance(text, str):
        raise MalformedPayload(f"text must be a string, got {json_kind(text)}")
    return text


def _retweet_text(own: str, original: Mapping[str, object] | None, includes: Includes) -> str:
    if original is None:
        return own
    try:
        full = _text_of(original)
    except MalformedPayload:
        return own
    author_id = original.get("author_id")
    user = includes.users.get(author_id) if isinstance(author_id, str) else None
    name = _string(user.get("username")) if user is not None else None
    return f"RT @{name}: {full}" if name else full


def _reference(tweet: Mapping[str, object]) -> tuple[str | None, str | None]:
    refs = tweet.get("referenced_tweets")
    if not isinstance(refs, list):
        return None, None
    found: dict[str, str] = {}
    for ref in refs:
        if isinstance(ref, Mapping) and isinstance(ref.get("type"), str):
            try:
                found.setdefault(str(ref["type"]), tweet_id(ref.get("id")))
            except MalformedPayload:
                continue  # a bad reference loses the link, not the tweet
    for kind in _REFERENCE_ORDER:
        if kind in found:
            return kind, found[kind]
    return None, None


def _created_at(value: object, native_id: str) -> datetime:
    if isinstance(value, str):
        try:
            return utc(datetime.fromisoformat(value))
        except ValueError:
            raise MalformedPayload(f"unparsable created_at {_preview(value)}") from None
    if value is None:
        return snowflake_time(native_id)
    raise MalformedPayload(f"created_at must be a string, got {json_kind(value)}")


def _count(metrics: Mapping[str, object], name: str) -> int | None:
    value = metrics.get(name)
    if type(value) is int and 0 <= value < 2**63:
        return value
    return None  # absent or odd counts are unknown, not a reason to lose the tweet


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --------------------------------------------------------------------------------------------------
# Stream lines and search pages


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One stream line: at most one post, and any system messages (errors) sent with it."""

    post: Post | None
    errors: tuple[str, ...] = ()
    # X announces a disconnect it is about to make (maintenance, a slow consumer) with this message.
    disconnect: bool = False


def parse_stream_line(line: bytes, *, source: str, received_at: datetime, max_bytes: int) -> StreamMessage:
    """Parse one non-empty stream line (keep-alives are handled before this)."""
    if len(line) > max_bytes:
        raise MalformedPayload(f"line of {len(line)} bytes exceeds {max_bytes}")
    try:
        payload = json.loads(line)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise MalformedPayload(f"invalid JSON: {str(exc)[:80]}") from None
    if not isinstance(payload, dict):
        raise MalformedPayload(f"expected a JSON object, got {json_kind(payload)}")
    errors, disconnect = _errors(payload.get("errors"))
    data = payload.get("data")
    if data is None:
        if not errors:
            raise MalformedPayload("a stream line without data or errors")
        return StreamMessage(None, errors, disconnect)
    post = tweet_to_post(
        data,
        Includes.from_payload(payload.get("includes")),
        source=source,
        received_at=received_at,
        channel=_first_tag(payload.get("matching_rules")),
    )
    return StreamMessage(post, errors, disconnect)


def _first_tag(matching: object) -> str | None:
    """The tag of the first matching rule that has one (tags are optional on X)."""
    if isinstance(matching, list):
        for rule in matching:
            if isinstance(rule, Mapping) and isinstance(rule.get("tag"), str) and rule["tag"]:
                return str(rule["tag"])
    return None


def _errors(errors: object) -> tuple[tuple[str, ...], bool]:
    if not isinstance(errors, list):
        return (), False
    out: list[str] = []
    disconnect = False
    for error in errors:
        if not isinstance(error, Mapping):
            continue
        title = _string(error.get("title")) or "error"
        detail = _string(error.get("detail")) or _string(error.get("message")) or ""
        if title == "operational-disconnect" or "disconnect_type" in error:
            disconnect = True
        out.append(f"{title}: {detail}"[:300] if detail else title)
    return tuple(out), disconnect


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of recent search: its posts (newest first, as X sends them), the tweets that could
    not be parsed (reasons), and the token of the next page."""

    posts: tuple[Post, ...]
    malformed: tuple[str, ...]
    next_token: str | None
    newest_id: str | None


def parse_search_page(
    payload: object, *, source: str, received_at: datetime, channel: str | None = None
) -> SearchPage:
    """A recent-search response -> `SearchPage`; a page that is not one raises `MalformedPayload`."""
    if not isinstance(payload, Mapping):
        raise MalformedPayload(f"search response must be an object, got {json_kind(payload)}")
    meta = payload.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    data = payload.get("data", [])
    if not isinstance(data, list):
        raise MalformedPayload(f"search data must be an array, got {json_kind(data)}")
    includes = Includes.from_payload(payload.get("includes"))
    posts: list[Post] = []
    malformed: list[str] = []
    for tweet in data:
        try:
            posts.append(
                tweet_to_post(tweet, includes, source=source, received_at=received_at, channel=channel)
            )
        except MalformedPayload as exc:
            malformed.append(str(exc))
    next_token = meta.get("next_token")
    newest = meta.get("newest_id")
    return SearchPage(
        posts=tuple(posts),
        malformed=tuple(malformed),
        next_token=next_token if isinstance(next_token, str) and next_token else None,
        newest_id=newest if isinstance(newest, str) else None,
    )


# --------------------------------------------------------------------------------------------------
# Stream rules


@dataclass(frozen=True, slots=True)
class StreamRule:
    """A filtered-stream rule as harvester wants it: the query and its tag (the rule's name)."""

    value: str
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ActiveRule:
    """A rule X already has, with the id it gave it."""

    id: str
    value: str
    tag: str | None


@dataclass(frozen=True, slots=True)
class RuleDiff:
    """What to send to make X's rule set equal the wanted one: ids to delete, rules to add."""

    delete: tuple[str, ...]
    add: tuple[StreamRule, ...]

    @property
    def empty(self) -> bool:
        return not self.delete and not self.add


class RuleProblem(ValueError):
    """A stream rule set that X would refuse (too many, too long). `path` names the config key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Derived:
    """The outcome of deriving stream rules: the rules, and the harvester rules that could not be
    expressed (name, why), which the collector logs."""

    rules: tuple[StreamRule, ...]
    skipped: tuple[tuple[str, str], ...]


_BARE_TERM: Final = re.compile(r"[^\W_]\w*|[#@][^\W_]\w*", re.UNICODE)
_RESERVED: Final = frozenset({"OR", "AND"})


def quote_term(term: str) -> str:
    """A keyword as an X query term: bare when it is one plain word (or #tag / @user), else an
    exact phrase in double quotes."""
    text = " ".join(term.split())
    if _BARE_TERM.fullmatch(text) and text not in _RESERVED:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _any_of(terms: Sequence[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def derive_rule(rule: RuleConfig, *, exclude_retweets: bool = False) -> tuple[str | None, str]:
    """One harvester rule -> (X query, "") or (None, why it cannot be streamed)."""
    positive = [quote_term(k) for k in rule.keywords]
    positive += [f"${tag}" for tag in rule.cashtags]
    positive += list(rule.symbols)  # X matches case-insensitively; the engine keeps only upper case
    required = [quote_term(k) for k in rule.all_of]
    if not positive and not required:
        why = "regular expressions" if rule.regex else "match_all"
        return None, f"X cannot filter by {why}; give the source stream_rules for it"
    parts: list[str] = []
    if positive:
        parts.append(_any_of(_unique(positive)))
    parts += _unique(required)
    parts += [f"-{quote_term(word)}" for word in _unique(rule.exclude)]
    langs = _unique(lang.split("-")[0] for lang in rule.langs)  # X knows base languages only
    if langs:
        parts.append(_any_of([f"lang:{lang}" for lang in langs]))
    if exclude_retweets:
        parts.append("-is:retweet")
    return " ".join(parts), ""


def derive_stream_rules(
    rules: Iterable[RuleConfig], *, source: str, exclude_retweets: bool = False
) -> Derived:
    """The stream rules for `source`: one per harvester rule that applies to it (a rule with
    `sources` that do not name this source is left out)."""
    out: list[StreamRule] = []
    skipped: list[tuple[str, str]] = []
    for rule in rules:
        if rule.sources and source not in rule.sources:
            continue
        value, why = derive_rule(rule, exclude_retweets=exclude_retweets)
        if value is None:
            skipped.append((rule.name, why))
        else:
            out.append(StreamRule(value=value, tag=rule.name))
    return Derived(tuple(out), tuple(skipped))


def check_limits(
    rules: Sequence[StreamRule], *, max_rules: int, max_length: int, path: str = "rules"
) -> None:
    """Raise `RuleProblem` when X would refuse this rule set: more rules than the account may hold,
    or a rule longer than it may be. Checked before anything is sent, so the user sees which rule."""
    if len(rules) > max_rules:
        raise RuleProblem(
            path,
            f"{len(rules)} stream rules, but the limit is {max_rules} (max_rules); "
            "combine rules or raise max_rules if your X access level allows more",
        )
    for index, rule in enumerate(rules):
        if len(rule.value) > max_length:
            name = rule.tag or f"#{index + 1}"
            raise RuleProblem(
                path,
                f"the stream rule for {name!r} is {len(rule.value)} characters, over the limit of "
                f"{max_length} (max_rule_length); split the rule or shorten its keywords",
            )
        if not rule.value.strip():
            raise RuleProblem(path, f"stream rule #{index + 1} is empty")
    tags = [r.tag for r in rules if r.tag]
    values = [r.value for r in rules]
    for what, items in (("value", values), ("tag", tags)):
        seen: set[str] = set()
        for item in items:
            if item in seen:
                raise RuleProblem(path, f"two stream rules have the same {what} {item!r}")
            seen.add(item)


def parse_rules_response(payload: object) -> list[ActiveRule]:
    """GET /2/tweets/search/stream/rules -> the active rules (no `data` means none)."""
    if not isinstance(payload, Mapping):
        raise MalformedPayload(f"rules response must be an object, got {json_kind(payload)}")
    data = payload.get("data", [])
    if data is None:
        return []
    if not isinstance(data, list):
        raise MalformedPayload(f"rules data must be an array, got {json_kind(data)}")
    out = []
    for item in data:
        if not (isinstance(item, Mapping) and isinstance(item.get("id"), str)):
            raise MalformedPayload(f"a rule without an id: {_preview(item)}")
        value = item.get("value")
        if not isinstance(value, str):
            raise MalformedPayload(f"rule {item['id']} has no value")
        tag = item.get("tag")
        out.append(ActiveRule(id=str(item["id"]), value=value, tag=tag if isinstance(tag, str) else None))
    return out


def rule_errors(payload: object) -> list[str]:
    """The errors of an add-rules response that mean a rule was refused (a duplicate is not one)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("errors"), list):
        return []
    out = []
    for error in payload["errors"]:
        if not isinstance(error, Mapping):
            continue
        title = _string(error.get("title")) or "error"
        if title == "DuplicateRule":
            continue
        value = _string(error.get("value"))
        details = error.get("details")
        detail = "; ".join(d for d in details if isinstance(d, str)) if isinstance(details, list) else ""
        detail = detail or _string(error.get("detail")) or ""
        out.append(" ".join(p for p in (title, f"for {value!r}" if value else "", detail) if p))
    return out


def diff_rules(active: Sequence[ActiveRule], wanted: Sequence[StreamRule]) -> RuleDiff:
    """Delete what X has and we do not want (and repeats), add what we want and X lacks; a rule that
    is unchanged (same value and tag) is left alone, so a reload touches only what changed."""
    wanted_keys = {(r.value, r.tag) for r in wanted}
    kept: set[tuple[str, str | None]] = set()
    delete = []
    for rule in active:
        key = (rule.value, rule.tag)
        if key in wanted_keys and key not in kept:
            kept.add(key)
        else:
            delete.append(rule.id)
    add = tuple(r for r in _unique_rules(wanted) if (r.value, r.tag) not in kept)
    return RuleDiff(delete=tuple(delete), add=add)


def _unique_rules(rules: Sequence[StreamRule]) -> list[StreamRule]:
    seen: set[tuple[str, str | None]] = set()
    out = []
    for rule in rules:
        if (rule.value, rule.tag) not in seen:
            seen.add((rule.value, rule.tag))
            out.append(rule)
    return out


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _preview(value: object, limit: int = 40) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
