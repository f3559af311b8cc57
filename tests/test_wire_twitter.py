"""X v2 payloads and stream rules, parsed and derived without a socket."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from harvester.config.rules import RuleConfig
from harvester.errors import MalformedPayload
from harvester.wire.twitter import (
    ActiveRule,
    Includes,
    RuleProblem,
    StreamRule,
    check_limits,
    derive_rule,
    derive_stream_rules,
    diff_rules,
    parse_rules_response,
    parse_search_page,
    parse_stream_line,
    quote_term,
    rule_errors,
    snowflake_time,
    tweet_to_post,
)
from tests.helpers import T0

# Shaped like X's responses with the expansions and fields the source asks for.
TWEET = {
    "id": "1846987139428634858",
    "text": "Acme Air lost my bag again https://t.co/x",
    "author_id": "2244994945",
    "created_at": "2024-10-17T18:00:32.000Z",
    "lang": "en",
    "conversation_id": "1846987139428634858",
    "public_metrics": {
        "retweet_count": 12,
        "reply_count": 3,
        "like_count": 40,
        "quote_count": 2,
        "bookmark_count": 1,
        "impression_count": 900,
    },
    "edit_history_tweet_ids": ["1846987139428634858"],
}
USER = {"id": "2244994945", "username": "XDevelopers", "public_metrics": {"followers_count": 512000}}
LINE = {
    "data": TWEET,
    "includes": {"users": [USER]},
    "matching_rules": [{"id": "1846987139428634000", "tag": "acme-air"}],
}


def parse(payload: object, max_bytes: int = 512 * 1024) -> object:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_stream_line(raw, source="x", received_at=T0, max_bytes=max_bytes)


def test_a_stream_line_becomes_a_complete_post() -> None:
    message = parse_stream_line(json.dumps(LINE).encode(), source="x", received_at=T0, max_bytes=10**6)
    post = message.post
    assert post is not None and not message.errors
    assert post.uid == "x:1846987139428634858" and post.native_id == "1846987139428634858"
    assert post.author == "XDevelopers" and post.followers == 512000
    assert post.text == TWEET["text"]
    assert post.created_at == datetime(2024, 10, 17, 18, 0, 32, tzinfo=UTC)
    assert post.received_at == T0
    assert post.lang == "en" and post.channel == "acme-air"
    assert (post.likes, post.reposts, post.replies) == (40, 14, 3)  # reposts = retweets + quotes
    assert post.url == "https://x.com/XDevelopers/status/1846987139428634858"
    assert post.ref is None


def test_matching_rules_without_tag_are_fine() -> None:
    line = {**LINE, "matching_rules": [{"id": "1"}]}
    message = parse_stream_line(json.dumps(line).encode(), source="x", received_at=T0, max_bytes=10**6)
    assert message.post is not None and message.post.channel is None


def test_a_retweet_refers_to_the_original_and_carries_its_full_text() -> None:
    original = {"id": "100", "text": "the whole original text, not cut", "author_id": "9"}
    retweet = {
        "id": "200",
        "text": "RT @orig: the whole orig…",
        "author_id": USER["id"],
        "referenced_tweets": [{"type": "retweeted", "id": "100"}],
    }
    includes = Includes.from_payload({"users": [USER, {"id": "9", "username": "orig"}], "tweets": [original]})
    post = tweet_to_post(retweet, includes, source="x", received_at=T0)
    assert post.ref == "x:100"
    assert post.text == "RT @orig: the whole original text, not cut"


def test_reference_preference_and_long_posts() -> None:
    tweet = {
        "id": "300",
        "text": "short",
        "note_tweet": {"text": "a long post " * 40},
        "referenced_tweets": [{"type": "replied_to", "id": "5"}, {"type": "quoted", "id": "6"}],
    }
    post = tweet_to_post(tweet, Includes(), source="x", received_at=T0)
    assert post.ref == "x:6"  # a quote says more about what the post is than the reply does
    assert post.text.startswith("a long post a long post")
    assert post.author == "" and post.url == "https://x.com/i/status/300"


def test_created_at_falls_back_to_the_snowflake() -> None:
    # A documented pair from X's API reference: this id was created at 2019-12-31T19:26:16.000Z.
    post = tweet_to_post({"id": "1212092628029698048", "text": "t"}, Includes(), source="x", received_at=T0)
    assert post.created_at == snowflake_time("1212092628029698048")
    assert abs((post.created_at - datetime(2019, 12, 31, 19, 26, 16, tzinfo=UTC)).total_seconds()) < 1


def test_text_is_capped_and_undetermined_language_is_none() -> None:
    post = tweet_to_post(
        {"id": "1", "text": "x" * 5000, "lang": "und"}, Includes(), source="x", received_at=T0
    )
    assert len(post.text) == 2000 and post.lang is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"meta": {}}', "without data or errors"),
        (b'{"data": "text"}', "tweet must be an object"),
        (b'{"data": {"text": "no id"}}', "tweet id"),
        (b'{"data": {"id": "1x", "text": "t"}}', "tweet id"),
        (b'{"data": {"id": "1"}}', "missing text"),
        (b'{"data": {"id": "1", "text": 5}}', "text must be a string"),
        (b'{"data": {"id": "1", "text": "t", "created_at": "yesterday"}}', "created_at"),
        (b"[" * 100_000, "invalid JSON"),
    ],
)
def test_malformed_lines_raise_a_typed_error(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayload, match=reason):
        parse(raw)


def test_an_over_long_line_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedPayload, match="exceeds 100"):
        parse(b'{"data": ' + b" " * 200 + b"}", max_bytes=100)


def test_odd_enrichment_never_loses_the_tweet() -> None:
    line = {
        "data": {**TWEET, "public_metrics": {"like_count": "many"}, "referenced_tweets": [{"type": 1}]},
        "includes": {"users": "nope", "tweets": [None]},
        "matching_rules": "x",
    }
    message = parse(line)
    post = message.post  # type: ignore[attr-defined]
    assert post.likes is None and post.ref is None and post.author == TWEET["author_id"]


def test_system_messages_are_reported_not_malformed() -> None:
    line = {
        "errors": [
            {
                "title": "operational-disconnect",
                "disconnect_type": "UpstreamOperationalDisconnect",
                "detail": "This stream has been disconnected upstream for operational reasons.",
                "type": "https://api.twitter.com/2/problems/operational-disconnect",
            }
        ]
    }
    message = parse(line)
    assert message.post is None and message.disconnect  # type: ignore[attr-defined]
    assert message.errors[0].startswith("operational-disconnect: This stream")  # type: ignore[attr-defined]


def test_a_search_page_keeps_good_tweets_and_names_bad_ones() -> None:
    page = parse_search_page(
        {
            "data": [TWEET, {"id": "bad"}, {**TWEET, "id": "1846987139428634000"}],
            "includes": {"users": [USER]},
            "meta": {"newest_id": TWEET["id"], "result_count": 3, "next_token": "b26v89c19zqg8o3f"},
        },
        source="x",
        received_at=T0,
        channel="acme-air",
    )
    assert [p.native_id for p in page.posts] == [TWEET["id"], "1846987139428634000"]
    assert all(p.channel == "acme-air" and p.author == "XDevelopers" for p in page.posts)
    assert len(page.malformed) == 1 and "tweet id" in page.malformed[0]
    assert page.next_token == "b26v89c19zqg8o3f" and page.newest_id == TWEET["id"]
    empty = parse_search_page({"meta": {"result_count": 0}}, source="x", received_at=T0)
    assert empty.posts == () and empty.next_token is None
    with pytest.raises(MalformedPayload):
        parse_search_page({"data": {"id": "1"}}, source="x", received_at=T0)


# -- rules ---------------------------------------------------------------------------------------


def rule(**fields: object) -> RuleConfig:
    return RuleConfig.model_validate({"name": "r", **fields})


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("acme", "acme"),
        ("acme air", '"acme air"'),
        ("  acme   air ", '"acme air"'),
        ("#acme", "#acme"),
        ("@acme", "@acme"),
        ("c++", '"c++"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("OR", '"OR"'),
        ("straße", "straße"),
        ("-x", '"-x"'),
    ],
)
def test_terms_are_quoted_when_they_are_not_one_plain_word(term: str, expected: str) -> None:
    assert quote_term(term) == expected


def test_a_rule_becomes_an_x_query() -> None:
    value, why = derive_rule(
        rule(
            keywords=["acme air", "acmeair"],
            cashtags=["acme"],
            symbols=["ACMX"],
            all_of=["refund"],
            exclude=["giveaway", "promo code"],
            langs=["en", "en-GB", "pt_BR"],
        ),
        exclude_retweets=True,
    )
    assert why == ""
    assert value == (
        '("acme air" OR acmeair OR $ACME OR ACMX) refund -giveaway -"promo code" '
        "(lang:en OR lang:pt) -is:retweet"
    )
    assert derive_rule(rule(keywords=["acme"]))[0] == "acme"
    assert derive_rule(rule(all_of=["refund", "delay"]))[0] == "refund delay"


def test_rules_x_cannot_express_are_reported_and_source_filters_apply() -> None:
    derived = derive_stream_rules(
        [
            RuleConfig(name="re", regex=[r"\brefunds?\b"]),
            RuleConfig(name="all", match_all=True),
            RuleConfig(name="other", keywords=["x"], sources=["reddit"]),
            RuleConfig(name="mine", keywords=["acme"], sources=["tw"]),
            RuleConfig(name="any", keywords=["beta"]),
        ],
        source="tw",
    )
    assert derived.rules == (StreamRule("acme", "mine"), StreamRule("beta", "any"))
    assert [name for name, _ in derived.skipped] == ["re", "all"]
    assert "regular expressions" in derived.skipped[0][1]


def test_limits_name_the_rule_and_the_key() -> None:
    rules = [StreamRule("a" * 30, "long-one")]
    with pytest.raises(
        RuleProblem, match=r"'long-one' is 30 characters, over the limit of 20 \(max_rule_length\)"
    ):
        check_limits(rules, max_rules=5, max_length=20)
    with pytest.raises(RuleProblem, match=r"3 stream rules, but the limit is 2 \(max_rules\)"):
        check_limits([StreamRule(str(i)) for i in range(3)], max_rules=2, max_length=20)
    with pytest.raises(RuleProblem, match="same value"):
        check_limits([StreamRule("a", "1"), StreamRule("a", "2")], max_rules=5, max_length=20)
    check_limits([StreamRule("a", "1"), StreamRule("b")], max_rules=2, max_length=20)


def test_diff_touches_only_what_changed() -> None:
    active = [
        ActiveRule("1", "acme", "acme"),
        ActiveRule("2", "beta", "beta"),
        ActiveRule("3", "acme", "acme"),  # a repeat left by some earlier client
        ActiveRule("4", "foreign", None),
    ]
    wanted = [StreamRule("acme", "acme"), StreamRule("beta OR gamma", "beta"), StreamRule("new", "new")]
    diff = diff_rules(active, wanted)
    assert diff.delete == ("2", "3", "4")
    assert diff.add == (StreamRule("beta OR gamma", "beta"), StreamRule("new", "new"))
    same = diff_rules([ActiveRule("1", "acme", "acme")], [StreamRule("acme", "acme")])
    assert same.empty


def test_rules_responses() -> None:
    assert parse_rules_response({"meta": {"result_count": 0}}) == []
    assert parse_rules_response(
        {"data": [{"id": "1", "value": "a"}, {"id": "2", "value": "b", "tag": "t"}]}
    ) == [
        ActiveRule("1", "a", None),
        ActiveRule("2", "b", "t"),
    ]
    with pytest.raises(MalformedPayload):
        parse_rules_response({"data": [{"value": "no id"}]})
    errors = rule_errors(
        {
            "errors": [
                {"value": "a", "title": "DuplicateRule"},
                {"value": "b:", "title": "UnprocessableEntity", "details": ["Reference to invalid operator"]},
            ]
        }
    )
    assert errors == ["UnprocessableEntity for 'b:' Reference to invalid operator"]
