"""The pure Discord parsers: message payloads (gateway and REST shapes), guild channel lists, cursors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from harvester.errors import MalformedPayload
from harvester.models import MAX_TEXT_CHARS
from harvester.wire.discord import (
    decode_cursor,
    encode_cursor,
    guild_channels,
    parse_message,
    parse_post,
    snowflake_time,
    time_snowflake,
)

RECEIVED = datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)

# A gateway MESSAGE_CREATE `d` as Discord sends it for a reply with an attachment and mentions.
GATEWAY_REPLY: dict[str, Any] = {
    "type": 19,
    "tts": False,
    "timestamp": "2026-03-02T12:00:00.123000+00:00",
    "referenced_message": {"id": "1234567890123456700", "content": "original"},
    "pinned": False,
    "nonce": "1234567890123456788",
    "mentions": [
        {"id": "80351110224678912", "username": "nelly", "discriminator": "0", "avatar": None},
        {"id": "80351110224678913", "username": "bob", "discriminator": "0", "avatar": None},
    ],
    "mention_roles": ["41771983423143936"],
    "mention_everyone": False,
    "member": {"roles": [], "joined_at": "2025-01-01T00:00:00+00:00"},
    "id": "1234567890123456789",
    "flags": 0,
    "embeds": [],
    "edited_timestamp": None,
    "content": "@nelly @bob $ACME is down again",
    "channel_id": "290926798999357250",
    "author": {
        "username": "alice",
        "public_flags": 0,
        "id": "53908232506183680",
        "global_name": "Alice",
        "discriminator": "0",
        "avatar": "a_bab14f271d565501444b2ca3be944b25",
    },
    "attachments": [
        {"id": "1", "filename": "a.png", "size": 10, "url": "https://cdn.example/a.png"},
        {"id": "2", "filename": "b.png", "size": 10, "url": "https://cdn.example/b.png"},
    ],
    "guild_id": "290926798626357250",
    "message_reference": {
        "type": 0,
        "channel_id": "290926798999357250",
        "message_id": "1234567890123456700",
        "guild_id": "290926798626357250",
    },
}

# The same kind of message from GET /channels/{id}/messages: no guild_id, and reactions.
HISTORY_ITEM: dict[str, Any] = {
    "id": "1234567890123456999",
    "type": 0,
    "content": "hello",
    "channel_id": "290926798999357250",
    "author": {"id": "53908232506183680", "username": "oldtimer", "discriminator": "1337", "avatar": None},
    "attachments": [],
    "embeds": [],
    "mentions": [],
    "mention_roles": [],
    "pinned": False,
    "mention_everyone": True,
    "tts": False,
    "timestamp": "2026-03-02T12:00:01+00:00",
    "edited_timestamp": None,
    "flags": 0,
    "reactions": [
        {"count": 3, "me": False, "emoji": {"id": None, "name": "🔥"}},
        {"count": 2, "me": False, "emoji": {"id": None, "name": "👍"}},
    ],
    "thread": {"id": "5", "message_count": 7},
}


def test_gateway_reply_becomes_a_post_with_every_field() -> None:
    message = parse_message(GATEWAY_REPLY)
    assert message.id == 1234567890123456789
    assert message.guild_id == 290926798626357250
    assert message.channel_id == 290926798999357250
    assert message.author == "alice" and message.author_id == 53908232506183680
    assert message.attachments == 2
    assert message.mentions == (80351110224678912, 80351110224678913)
    assert message.mention_roles == (41771983423143936,)
    assert message.reply_to == 1234567890123456700
    assert message.reactions is None  # a fresh MESSAGE_CREATE does not say
    assert message.has_content

    post = message.to_post("discord", RECEIVED)
    assert post.uid == "discord:1234567890123456789"
    assert post.native_id == "1234567890123456789"
    assert post.text == "@nelly @bob $ACME is down again"
    assert post.author == "alice"
    assert post.channel == "290926798626357250/290926798999357250"
    assert (
        post.url == "https://discord.com/channels/290926798626357250/290926798999357250/1234567890123456789"
    )
    assert post.ref == "discord:1234567890123456700"
    assert post.created_at == datetime(2026, 3, 2, 12, 0, 0, 123000, tzinfo=UTC)
    assert post.received_at == RECEIVED
    assert post.likes is None


def test_history_item_takes_the_guild_from_the_caller_and_counts_reactions() -> None:
    post = parse_post(HISTORY_ITEM, source="dc", received_at=RECEIVED, guild_id=290926798626357250)
    assert post.channel == "290926798626357250/290926798999357250"
    assert post.likes == 5
    assert post.replies == 7
    assert post.author == "oldtimer#1337"  # a legacy name keeps its discriminator
    assert post.ref is None
    assert parse_message(HISTORY_ITEM).mention_everyone


def test_bytes_and_str_payloads_parse_like_dicts() -> None:
    raw = json.dumps(GATEWAY_REPLY)
    assert parse_message(raw) == parse_message(raw.encode()) == parse_message(GATEWAY_REPLY)


def test_missing_timestamp_falls_back_to_the_snowflake_time() -> None:
    payload = {k: v for k, v in HISTORY_ITEM.items() if k != "timestamp"}
    message = parse_message(payload, guild_id=1)
    assert message.created_at == snowflake_time(1234567890123456999)
    assert message.created_at.tzinfo is UTC


def test_snowflake_time_round_trip() -> None:
    when = datetime(2026, 3, 2, 12, 0, 0, 250000, tzinfo=UTC)
    assert snowflake_time(time_snowflake(when)) == when
    assert time_snowflake(datetime(2010, 1, 1, tzinfo=UTC)) == 0  # before Discord's epoch


def test_system_messages_are_parsed_but_flagged() -> None:
    join = {**HISTORY_ITEM, "type": 7, "content": ""}
    assert not parse_message(join, guild_id=1).has_content


def test_text_is_capped_and_null_content_is_empty() -> None:
    long = parse_message({**HISTORY_ITEM, "content": "x" * (MAX_TEXT_CHARS + 50)}, guild_id=1)
    assert len(long.to_post("d", RECEIVED).text) == MAX_TEXT_CHARS
    assert parse_message({**HISTORY_ITEM, "content": None}, guild_id=1).content == ""


def test_reference_without_message_id_is_no_reply() -> None:
    crosspost = {**HISTORY_ITEM, "message_reference": {"channel_id": "1", "guild_id": "2"}}
    assert parse_message(crosspost, guild_id=1).reply_to is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "id"),
        ({"id": "12ab"}, "id"),
        ({"id": True}, "id"),
        ({"id": "0"}, "out of range"),
        ({"channel_id": 5.5}, "channel_id"),
        ({"author": None}, "author"),
        ({"author": {"id": "1"}}, "author.username"),
        ({"author": {"id": "x", "username": "a"}}, "author.id"),
        ({"content": 5}, "content"),
        ({"type": "0"}, "type"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": 17}, "timestamp"),
        ({"attachments": {}}, "attachments"),
        ({"mentions": ["1"]}, "mentions"),
        ({"mentions": [{"id": None}]}, "mentions"),
        ({"reactions": [{"count": -1}]}, "reactions"),
        ({"reactions": "3"}, "reactions"),
        ({"message_reference": "1"}, "message_reference"),
        ({"guild_id": "guild"}, "guild_id"),
    ],
)
def test_malformed_messages_raise_a_typed_error(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        parse_message({**GATEWAY_REPLY, **change})


@pytest.mark.parametrize("payload", [None, [], "not json", b"\xff\xfe", 17, "[1, 2]"])
def test_non_objects_are_malformed(payload: object) -> None:
    with pytest.raises(MalformedPayload):
        parse_message(payload)


def test_guild_channels_lists_channels_and_threads_and_skips_odd_entries() -> None:
    guild = {
        "id": "10",
        "channels": [
            {"id": "11", "type": 0},
            {"id": "12", "type": 4},
            {"id": "bad", "type": 0},
            {"id": "13"},
            "junk",
        ],
        "threads": [{"id": "14", "type": 11, "parent_id": "11"}],
    }
    guild_id, channels = guild_channels(guild)
    assert guild_id == 10
    assert [(c.id, c.type) for c in channels] == [(11, 0), (12, 4), (14, 11)]
    with pytest.raises(MalformedPayload):
        guild_channels({"channels": []})


def test_cursor_round_trip_is_compact_and_sorted() -> None:
    entries = {(2, 20): 2_000_000_000_000_000_001, (1, 10): 5}
    text = encode_cursor(entries)
    assert text == '{"1/10":"5","2/20":"2000000000000000001"}'
    assert decode_cursor(text) == entries
    assert decode_cursor(None) == {} == decode_cursor("")


@pytest.mark.parametrize("text", ["17", "[]", "{", '{"1":"2"}', '{"1/x":"2"}', '{"1/2":"-3"}', '{"a/2":"3"}'])
def test_foreign_cursors_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="discord cursor"):
        decode_cursor(text)
