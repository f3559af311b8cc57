"""Discord's wire format, parsed without I/O: message payloads, guild channel lists, snowflakes, cursors.

The same message object arrives two ways: as the `d` of a gateway `MESSAGE_CREATE` (which carries
`guild_id` and a `member`) and as an element of `GET /channels/{id}/messages` (no `guild_id`, but
`reactions` once somebody reacted). `parse_message` takes either; the caller supplies the guild for
REST payloads. Only what harvester uses is read, so unknown fields and new message types never break
parsing; a payload without the few required fields raises `MalformedPayload`.

This module never imports discord.py: it is the sans-I/O half of the `discord` source and is tested on
recorded-style payloads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from harvester.errors import MalformedPayload
from harvester.models import Post, cap_text

# Snowflakes count milliseconds from the first second of 2015; the low 22 bits are worker and sequence.
DISCORD_EPOCH_MS: Final = 1_420_070_400_000
_SNOWFLAKE_MAX: Final = 2**64 - 1

# Message types that carry what a person wrote: DEFAULT and REPLY. The rest (joins, pins, boosts,
# thread-created notices...) are system messages with generated or empty content.
CONTENT_MESSAGE_TYPES: Final = frozenset({0, 19})

# Channel types whose messages we collect when a whole guild is allowed: text, voice (text-in-voice),
# announcement, the three thread types, and stage. Categories, forums and media channels hold no
# messages of their own (forum posts are threads, listed separately).
MESSAGE_CHANNEL_TYPES: Final = frozenset({0, 2, 5, 10, 11, 12, 13})

MESSAGE_URL: Final = "https://discord.com/channels/{guild}/{channel}/{message}"


# --------------------------------------------------------------------------------------------------
# Snowflakes


def snowflake(value: object, field: str) -> int:
    """A Discord id: a decimal string (as Discord sends it) or an int, in 1 .. 2**64-1."""
    if isinstance(value, bool):
        raise MalformedPayload(f"{field} must be a snowflake, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise MalformedPayload(f"{field} must be a snowflake, got {_kind(value)}")
    if not 0 < number <= _SNOWFLAKE_MAX:
        raise MalformedPayload(f"{field} out of range: {number}")
    return number


def snowflake_time(snowflake_id: int) -> datetime:
    """When a snowflake was minted (millisecond precision, UTC)."""
    return datetime.fromtimestamp(((snowflake_id >> 22) + DISCORD_EPOCH_MS) / 1000.0, UTC)


def time_snowflake(when: datetime) -> int:
    """The smallest snowflake minted at `when`: an `after=` anchor meaning "everything since then"."""
    ms = int(when.timestamp() * 1000) - DISCORD_EPOCH_MS
    return max(ms, 0) << 22


# --------------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class DiscordMessage:
    """The parts of a Discord message harvester keeps. `reactions` is None where the payload does not
    say (a fresh MESSAGE_CREATE never does); `reply_to` is the referenced message's id (a reply or a
    forward)."""

    id: int
    channel_id: int
    guild_id: int | None
    type: int
    author_id: int
    author: str
    author_is_bot: bool
    content: str
    created_at: datetime
    attachments: int
    mentions: tuple[int, ...]
    mention_roles: tuple[int, ...]
    mention_everyone: bool
    reply_to: int | None
    reactions: int | None
    thread_messages: int | None

    @property
    def has_content(self) -> bool:
        """True for messages people wrote; False for system notices."""
        return self.type in CONTENT_MESSAGE_TYPES

    @property
    def url(self) -> str:
        guild = "@me" if self.guild_id is None else str(self.guild_id)
        return MESSAGE_URL.format(guild=guild, channel=self.channel_id, message=self.id)

    @property
    def channel_key(self) -> str:
        """`guild/channel` in ids: stable across renames, and what the cursor is keyed by."""
        guild = "dm" if self.guild_id is None else str(self.guild_id)
        return f"{guild}/{self.channel_id}"

    def to_post(self, source: str, received_at: datetime) -> Post:
        native_id = str(self.id)
        return Post(
            uid=Post.make_uid(source, native_id),
            source=source,
            native_id=native_id,
            author=self.author,
            text=cap_text(self.content),
            created_at=self.created_at,
            received_at=received_at,
            url=self.url,
            channel=self.channel_key,
            likes=self.reactions,
            replies=self.thread_messages,
            ref=None if self.reply_to is None else Post.make_uid(source, str(self.reply_to)),
        )


def parse_message(payload: object, *, guild_id: int | None = None) -> DiscordMessage:
    """One message object (dict, or its JSON as str/bytes) -> `DiscordMessage`.

    `guild_id` is used when the payload has none (REST history omits it). Raises `MalformedPayload`.
    """
    data = _as_mapping(payload)
    message_id = snowflake(data.get("id"), "id")
    channel_id = snowflake(data.get("channel_id"), "channel_id")
    raw_guild = data.get("guild_id")
    guild = guild_id if raw_guild is None else snowflake(raw_guild, "guild_id")
    message_type = data.get("type", 0)
    if isinstance(message_type, bool) or not isinstance(message_type, int):
        raise MalformedPayload(f"type must be an integer, got {_kind(message_type)}")
    content = data.get("content", "")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise MalformedPayload(f"content must be a string, got {_kind(content)}")
    author = data.get("author")
    if not isinstance(author, Mapping):
        raise MalformedPayload(f"author must be an object, got {_kind(author)}")
    return DiscordMessage(
        id=message_id,
        channel_id=channel_id,
        guild_id=guild,
        type=message_type,
        author_id=snowflake(author.get("id"), "author.id"),
        author=_author_name(author),
        author_is_bot=author.get("bot") is True,
        content=content,
        created_at=_created_at(data.get("timestamp"), message_id),
        attachments=len(_list(data, "attachments")),
        mentions=tuple(_ids(_list(data, "mentions"), "mentions")),
        mention_roles=tuple(snowflake(r, "mention_roles[]") for r in _list(data, "mention_roles")),
        mention_everyone=data.get("mention_everyone") is True,
        reply_to=_reply_to(data.get("message_reference")),
        reactions=_reaction_count(data.get("reactions")),
        thread_messages=_thread_messages(data.get("thread")),
    )


def parse_post(payload: object, *, source: str, received_at: datetime, guild_id: int | None = None) -> Post:
    """`parse_message` then `to_post`: for callers that need only the `Post`."""
    return parse_message(payload, guild_id=guild_id).to_post(source, received_at)


def _as_mapping(payload: object) -> Mapping[str, object]:
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayload(f"not JSON: {exc}") from None
    if not isinstance(payload, Mapping):
        raise MalformedPayload(f"a message must be an object, got {_kind(payload)}")
    return payload


def _author_name(author: Mapping[str, object]) -> str:
    username = author.get("username")
    if not isinstance(username, str) or not username:
        raise MalformedPayload("author.username must be a non-empty string")
    # Accounts migrated to unique usernames have discriminator "0"; legacy ones are name#1234.
    discriminator = author.get("discriminator")
    if isinstance(discriminator, str) and discriminator not in ("", "0"):
        return f"{username}#{discriminator}"
    return username


def _created_at(timestamp: object, message_id: int) -> datetime:
    if isinstance(timestamp, str):
        try:
            parsed = datetime.fromisoformat(timestamp)
        except ValueError:
            raise MalformedPayload(f"timestamp is not ISO 8601: {timestamp[:40]!r}") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if timestamp is None:
        return snowflake_time(message_id)  # the id is minted at creation, to the millisecond
    raise MalformedPayload(f"timestamp must be a string, got {_kind(timestamp)}")


def _list(data: Mapping[str, object], key: str) -> list[object]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"{key} must be a list, got {_kind(value)}")
    return value


def _ids(items: Sequence[object], field: str) -> list[int]:
    ids = []
    for item in items:
        if not isinstance(item, Mapping):
            raise MalformedPayload(f"{field}[] must be objects, got {_kind(item)}")
        ids.append(snowflake(item.get("id"), f"{field}[].id"))
    return ids


def _reply_to(reference: object) -> int | None:
    if reference is None:
        return None
    if not isinstance(reference, Mapping):
        raise MalformedPayload(f"message_reference must be an object, got {_kind(reference)}")
    message_id = reference.get("message_id")
    # A reference to a channel or guild alone (a crosspost notice, a follow) points at no message.
    return None if message_id is None else snowflake(message_id, "message_reference.message_id")


def _reaction_count(reactions: object) -> int | None:
    if reactions is None:
        return None
    if not isinstance(reactions, list):
        raise MalformedPayload(f"reactions must be a list, got {_kind(reactions)}")
    total = 0
    for reaction in reactions:
        count = reaction.get("count") if isinstance(reaction, Mapping) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise MalformedPayload("reactions[].count must be a non-negative integer")
        total += count
    return total


def _thread_messages(thread: object) -> int | None:
    if not isinstance(thread, Mapping):
        return None
    count = thread.get("message_count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------
# Guilds


@dataclass(frozen=True, slots=True)
class GuildChannel:
    id: int
    type: int


def guild_channels(guild: object) -> tuple[int, list[GuildChannel]]:
    """A GUILD_CREATE payload -> (guild id, its channels and active threads).

    Entries that are not well-formed are left out rather than failing the guild: one odd channel must
    not hide the others from backfill.
    """
    data = _as_mapping(guild)
    guild_id = snowflake(data.get("id"), "id")
    channels: list[GuildChannel] = []
    for key in ("channels", "threads"):
        items = data.get(key)
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, Mapping):
                continue
            kind = item.get("type")
            try:
                channel_id = snowflake(item.get("id"), "id")
            except MalformedPayload:
                continue
            if isinstance(kind, int) and not isinstance(kind, bool):
                channels.append(GuildChannel(channel_id, kind))
    return guild_id, channels


# --------------------------------------------------------------------------------------------------
# Cursor: per channel, the id up to which everything has been stored


def encode_cursor(entries: Mapping[tuple[int, int], int]) -> str:
    """`{(guild, channel): last id}` -> compact JSON `{"guild/channel":"id",...}` (sorted, so equal
    states give equal strings). Ids are strings: JSON numbers above 2**53 lose precision elsewhere."""
    items = {f"{g}/{c}": str(m) for (g, c), m in sorted(entries.items())}
    return json.dumps(items, separators=(",", ":"))


def decode_cursor(text: str | None) -> dict[tuple[int, int], int]:
    """The inverse of `encode_cursor`; None or "" is a fresh start. Raises ValueError on anything else."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError(f"discord cursor is not JSON: {text[:60]!r}") from None
    if not isinstance(raw, dict):
        raise ValueError("discord cursor must be a JSON object of 'guild/channel': 'message id'")
    entries: dict[tuple[int, int], int] = {}
    for key, value in raw.items():
        guild, sep, channel = key.partition("/")
        try:
            if not sep:
                raise MalformedPayload("no '/'")
            entries[(snowflake(guild, "guild"), snowflake(channel, "channel"))] = snowflake(value, "id")
        except MalformedPayload as exc:
            raise ValueError(f"discord cursor entry {key!r}: {exc}") from None
    return entries
