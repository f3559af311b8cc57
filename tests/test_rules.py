"""Rules: the schema's checks, and the one-pass matcher (keywords, phrases, cashtags, symbols, regex,
combinators and filters)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from harvester.config import parse_config
from harvester.config.rules import COMMON_WORDS
from harvester.config.schema import RuleConfig
from harvester.engine.rules import RuleMatcher
from harvester.errors import ConfigError
from tests.helpers import make_post


def matcher(*rules: RuleConfig) -> RuleMatcher:
    return RuleMatcher(list(rules))


def names(m: RuleMatcher, text: str, *, lang: str | None = None, source: str = "test") -> list[str]:
    post = dataclasses.replace(make_post(1, text, source=source), lang=lang)
    return [r.name for r in m.match(post)]


def rule_error(**fields: object) -> str:
    with pytest.raises(ValidationError) as info:
        RuleConfig(name="r", **fields)  # type: ignore[arg-type]
    errors = info.value.errors()
    assert len(errors) == 1
    return str(errors[0]["msg"]).removeprefix("Value error, ")


def config_error(rules_yaml: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config("rules:\n" + rules_yaml, "test.yaml", {})
    return str(info.value)


# -- keywords and phrases ---------------------------------------------------------------------------


def test_keywords_match_on_word_boundaries_case_insensitively() -> None:
    m = matcher(RuleConfig(name="acme", keywords=["acme air", "c++"]))
    assert names(m, "Flying ACME   Air today") == ["acme"]
    assert names(m, "I write C++ daily") == ["acme"]
    assert names(m, "acmeair is a typo") == []
    assert names(m, "the acme airline") == []


def test_a_phrase_needs_whitespace_between_its_words() -> None:
    m = matcher(RuleConfig(name="acme", keywords=["acme air"]))
    assert names(m, "acme\n\tair lost my bag") == ["acme"]
    assert names(m, "I like acme. Air travel is awful") == []
    assert names(m, "acme-air") == []
    assert names(m, "air acme") == []


def test_hashtags_and_mentions_of_a_keyword_match_it() -> None:
    m = matcher(RuleConfig(name="word", keywords=["acme"]), RuleConfig(name="tag", keywords=["#globex"]))
    assert names(m, "#Acme is down") == ["word"]
    assert names(m, "@acme fix this") == ["word"]
    assert names(m, "#acmeair is down") == []
    assert names(m, "#globex rocks") == ["tag"]
    assert names(m, "globex rocks") == []  # the hashtag keyword wants the hashtag
    assert names(m, "x#globex") == []


def test_keywords_with_symbols_emoji_and_unicode() -> None:
    m = matcher(
        RuleConfig(name="att", keywords=["AT&T"]),
        RuleConfig(name="rocket", keywords=["🚀"]),
        RuleConfig(name="dont", keywords=["don't buy"]),
        RuleConfig(name="cafe", keywords=["Café Zürich", "straße"]),
    )
    assert names(m, "at&t outage again") == ["att"]
    assert names(m, "at t") == []
    assert names(m, "$DOGE 🚀🚀") == ["rocket"]
    assert names(m, "DON'T  BUY this") == ["dont"]
    assert names(m, "dont buy") == []
    assert names(m, "CAFÉ ZÜRICH was lovely") == ["cafe"]
    assert names(m, "closed: STRASSE 5") == ["cafe"]  # case folding: ß is ss


def test_one_post_can_match_several_rules() -> None:
    m = matcher(RuleConfig(name="a", keywords=["outage"]), RuleConfig(name="b", match_all=True))
    assert names(m, "big outage") == ["a", "b"]
    assert names(m, "nothing here") == ["b"]


def test_matches_come_in_config_order() -> None:
    m = matcher(*(RuleConfig(name=f"r{i}", keywords=[f"w{i}", "shared"]) for i in range(5)))
    assert names(m, "w3 w1 shared") == ["r0", "r1", "r2", "r3", "r4"]
    assert names(m, "w4 then w2") == ["r2", "r4"]


# -- cashtags and symbols ---------------------------------------------------------------------------


def test_cashtags_and_exclusions_and_filters() -> None:
    m = matcher(
        RuleConfig(name="btc", cashtags=["$btc"], exclude=["giveaway"]),
        RuleConfig(name="tsla", cashtags=["TSLA"], sources=["reddit"]),
        RuleConfig(name="en", regex=[r"\brecall(ed)?\b"], langs=["en"]),
    )
    assert names(m, "buying $BTC now") == ["btc"]
    assert names(m, "$btc giveaway, click") == []
    assert names(m, "$BTCX is something else") == []
    assert names(m, "$TSLA earnings") == []  # wrong source
    assert names(m, "$TSLA earnings", source="reddit") == ["tsla"]
    assert names(m, "cars recalled again") == []  # lang unknown, rule wants en


def test_cashtags_at_the_end_of_a_sentence_and_with_a_class() -> None:
    m = matcher(RuleConfig(name="btc", cashtags=["BTC"]), RuleConfig(name="brk", cashtags=["$BRK.B"]))
    assert names(m, "Bought more $BTC.") == ["btc"]
    assert names(m, "($btc)") == ["btc"]
    assert names(m, "$BRK.B looks cheap") == ["brk"]
    assert names(m, "BTC without the sign") == []
    assert names(m, "US$BTC") == []


def test_symbols_match_upper_case_whole_words_only() -> None:
    m = matcher(RuleConfig(name="tsla", symbols=["TSLA"]), RuleConfig(name="nvda", symbols=["NVDA"]))
    assert names(m, "TSLA to 300") == ["tsla"]
    assert names(m, "$TSLA and NVDA.") == ["tsla", "nvda"]
    assert names(m, "tsla is lower case") == []
    assert names(m, "Tsla is not shouting") == []
    assert names(m, "TSLAQ is another thing") == []


@pytest.mark.parametrize("word", ["ON", "ARE", "GO", "CAN", "IT", "ALL", "A", "I", "YOU", "TV", "LIFE"])
def test_a_common_word_cannot_be_a_symbol(word: str) -> None:
    expected = f"{word!r} is a common word; write the cashtag ${word} instead"
    assert rule_error(symbols=["TSLA", word]) == expected


# The common words the issue names.
DOCUMENTED_COMMON_WORDS = (
    "ON ARE GO CAN IT ALL A I AM AN AT BE BY DO FOR HAS HE IF IN IS ME MY NO NOW OF OK ONE OR OUT SO "
    "TO UP US WE YOU NEW BIG REAL LOVE BEST GOOD CAR EAT FUN JOB LIFE PLAY RUN SEE TV"
)


def test_the_built_in_common_words_cover_the_documented_ones() -> None:
    assert set(DOCUMENTED_COMMON_WORDS.split()) <= COMMON_WORDS
    assert {"TSLA", "NVDA", "AAPL", "GME", "BTC"}.isdisjoint(COMMON_WORDS)


def test_symbol_mistakes_say_what_to_write() -> None:
    assert "write the cashtag $F instead" in rule_error(symbols=["F"])
    assert "write 'TSLA'" in rule_error(symbols=["tsla"])
    assert "list it under cashtags" in rule_error(symbols=["$TSLA"])
    assert "upper-case symbol" in rule_error(symbols=["BRK.B"])


def test_a_common_symbol_is_one_config_line_naming_the_key() -> None:
    quoted = "  - {name: a, keywords: [x]}\n  - {name: b, keywords: [y]}\n  - {name: c, symbols: ['ON']}\n"
    assert config_error(quoted) == (
        "config error: rules[2].symbols: 'ON' is a common word; write the cashtag $ON instead"
        " (test.yaml line 4)"
    )
    # Unquoted, YAML reads ON as true: the message still names the word and the fix.
    message = config_error("  - name: c\n    symbols: [TSLA, ON]\n")
    assert message.startswith("config error: rules[0].symbols: 'ON' is a common word; write the cashtag $ON")
    assert "\n" not in message


def test_yaml_booleans_in_keywords_are_explained() -> None:
    message = config_error("  - name: c\n    keywords: [acme, yes]\n")
    assert "rules[0].keywords: got true" in message and "quote the word" in message


# -- combinators ------------------------------------------------------------------------------------


def test_all_of_narrows_and_exclude_vetoes() -> None:
    m = matcher(
        RuleConfig(
            name="acme-outage",
            keywords=["acme", "acme air"],
            all_of=["outage", "refund"],
            exclude=["giveaway", "promo code"],
        )
    )
    assert names(m, "Acme outage, I want a refund") == ["acme-outage"]
    assert names(m, "Acme outage again") == []  # no refund
    assert names(m, "outage and refund, no brand") == []  # no keyword
    assert names(m, "acme outage refund, use my promo  code") == []
    assert names(m, "acme outage refund promo") == ["acme-outage"]  # "promo" alone is not the phrase


def test_a_rule_with_only_all_of_matches_when_all_appear() -> None:
    m = matcher(RuleConfig(name="both", all_of=["acme", "lawsuit"]))
    assert names(m, "Lawsuit filed against ACME") == ["both"]
    assert names(m, "acme news") == []


def test_match_all_with_all_of_and_exclude() -> None:
    m = matcher(RuleConfig(name="any", match_all=True, all_of=["refund"], exclude=["thanks"]))
    assert names(m, "refund please") == ["any"]
    assert names(m, "refund arrived, thanks") == []
    assert names(m, "nothing") == []


def test_regex_runs_for_its_own_rule_and_after_the_combinators() -> None:
    m = matcher(
        RuleConfig(name="rx", regex=[r"\brefunds?\b"], exclude=["thanks"]),
        RuleConfig(name="kw", keywords=["acme"]),
        RuleConfig(name="rx-en", regex=[r"\brefunds?\b"], langs=["en"]),
        RuleConfig(name="backref", regex=[r"\b(\w+) \1\b"]),
    )
    assert names(m, "REFUNDS now") == ["rx"]
    assert names(m, "REFUNDS now", lang="en") == ["rx", "rx-en"]
    assert names(m, "refund, thanks", lang="en") == ["rx-en"]
    assert names(m, "acme acme") == ["kw", "backref"]
    assert names(m, "nothing to see") == []


def test_rule_regexes_that_cannot_be_joined_still_match() -> None:
    m = matcher(
        RuleConfig(name="flags", regex=["(?i)refund"]),
        RuleConfig(name="named", regex=[r"(?P<x>ab)c"]),
        RuleConfig(name="named2", regex=[r"(?P<x>de)f"]),
    )
    assert names(m, "REFUND abc def") == ["flags", "named", "named2"]
    assert names(m, "nothing") == []


# -- source and language filters --------------------------------------------------------------------


def test_language_filters_take_regional_variants() -> None:
    m = matcher(
        RuleConfig(name="en", keywords=["acme"], langs=["en"]),
        RuleConfig(name="pt-br", keywords=["acme"], langs=["pt_BR"]),
    )
    assert names(m, "acme", lang="en") == ["en"]
    assert names(m, "acme", lang="EN-gb") == ["en"]
    assert names(m, "acme", lang="pt-BR") == ["pt-br"]
    assert names(m, "acme", lang="pt") == []
    assert names(m, "acme") == []
    assert "expected a language code" in rule_error(keywords=["acme"], langs=["english"])


def test_rule_validation_messages() -> None:
    assert "a rule needs keywords, cashtags, symbols, regex or all_of" in rule_error()
    assert rule_error(keywords=["acme", " "]) == "keywords cannot be empty strings"
    assert rule_error(all_of=[""]) == "all_of cannot be empty strings"
    assert "expected a list such as [acme]" in rule_error(keywords="acme")
    assert RuleConfig(name="n", keywords=[737]).keywords == ["737"]  # type: ignore[list-item]


# -- scale and equivalence --------------------------------------------------------------------------


def test_a_thousand_rules_with_ten_thousand_keywords() -> None:
    rules = [
        RuleConfig(name=f"r{i}", keywords=[f"kw{i}x{j}" for j in range(9)] + [f"brand{i} air"])
        for i in range(1000)
    ]
    m = RuleMatcher(rules)
    assert names(m, "kw17x3 and kw999x8 and BRAND5   AIR, not brand6 airline") == ["r5", "r17", "r999"]
    assert names(m, "kw17x33 brand6") == []


def reference_match(keywords: list[str], text: str) -> bool:
    """The obvious implementation the matcher must agree with: one regex per keyword."""
    for keyword in keywords:
        body = r"\s+".join(re.escape(part) for part in keyword.split())
        if re.search(rf"(?<!\w){body}(?!\w)", text, re.IGNORECASE):
            return True
    return False


WORDS = st.sampled_from(["acme", "Air", "c++", "#acme", "at&t", "air2"])
GAPS = st.sampled_from(["", " ", "  ", "\n", ".", ". ", "-", "#", "$", "x"])


@settings(max_examples=500, deadline=None)
@given(
    keywords=st.lists(st.lists(WORDS, min_size=1, max_size=2).map(" ".join), min_size=1, max_size=3),
    text=st.lists(st.tuples(GAPS, WORDS), max_size=6).map(lambda parts: "".join(g + w for g, w in parts)),
)
def test_matcher_agrees_with_one_regex_per_keyword(keywords: list[str], text: str) -> None:
    m = matcher(RuleConfig(name="r", keywords=keywords))
    assert (names(m, text) == ["r"]) == reference_match(keywords, text)


def test_a_lone_surrogate_in_a_text_is_a_separator_not_a_crash() -> None:
    # A JSON "\ud83d" without its pair decodes to a lone surrogate, which is not valid UTF-8.
    matcher = RuleMatcher(
        [RuleConfig(name="acme", keywords=["acme air"]), RuleConfig(name="ok", keywords=["ok"])]
    )
    post = make_post(1, "acme \ud83d air, ok")
    assert [rule.name for rule in matcher.match(post)] == ["ok"]
    assert [rule.name for rule in matcher.match(make_post(2, "acme air \ud83d"))] == ["acme"]
