"""The rule matcher against a straightforward reference on a few thousand posts.

`RuleMatcher` takes shortcuts to stay cheap with 1,000 rules (a word set, phrases filed under a pair
of words, rules without filters kept without a look); the reference below takes none: for every rule
it searches every keyword and phrase with its own word-boundary regex, and applies the combinators
and filters as the rule schema states them. Posts are the synthetic stream with awkward fragments
spliced in (phrases across punctuation or odd whitespace, hashtags, cashtags, case folding, emoji);
rules are the benchmark's generated rules plus hand-made ones that use every feature.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.bench_rules import generated_rules
from harvester.config.schema import RuleConfig
from harvester.engine import rules as engine_rules
from harvester.engine.rules import CompiledRule, RuleMatcher
from harvester.models import Post
from harvester.sources.synthetic_text import ScenarioPlan, StreamGenerator

START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
POSTS = 3000

# Spliced into posts: each is a near miss or a hit for some hand-made rule below.
FRAGMENTS = (
    "Acme Air", "ACME   AIR", "acme\nair", "acme\u00a0air", "acme\u2003air", "acme. air", "acme-air",
    "#AcmeAir", "@acme", "acmeair", "acme air customer  service", "acme air customer", "outage",
    "OUTAGE!", "refund", "REFUNDS", "refund refund", "lawsuit", "thanks", "giveaway", "promo  code",
    "promo", "C++", "c+", "AT&T", "at t", "don't buy", "DON'T\tBUY", "dont buy", "Café Zürich",
    "CAFÉ  ZÜRICH", "STRASSE", "straße", "🚀", "🚀🚀", "$BTC.", "$btc", "US$BTC", "$BTCX", "$BRK.B",
    "$ETH,", "($eth)", "TSLA", "tsla", "TSLAQ", "NVDA.", "x_y", "x_y_z", "abc", "flight delayed again",
    "flight delayed. again", "coffee", "COFFEE", "Verspätung", "ﬁne", "naïve café", "\uff11\uff12\uff13",
)  # fmt: skip
SEPARATORS = (" ", " ", "", ".", ", ", "\n", "#", "$", "-", "  ", "\u00a0")
LANGS = ("en", "en", "en-GB", "EN_us", "pt_BR", "pt", "de", None)
SOURCES = ("bench", "bench", "reddit", "x")


def hand_rules() -> list[RuleConfig]:
    return [
        RuleConfig(
            name="h-acme-outage",
            keywords=["acme air", "acme"],
            all_of=["outage"],
            exclude=["giveaway", "promo code"],
        ),
        RuleConfig(name="h-only-all-of", all_of=["refund", "lawsuit"]),
        RuleConfig(name="h-regex", regex=[r"\brefunds?\b", r"(?P<x>ab)c"], exclude=["thanks"]),
        RuleConfig(name="h-regex-en", regex=[r"\brefunds?\b"], langs=["en"]),
        RuleConfig(name="h-backref", regex=[r"\b(\w+) \1\b"]),
        RuleConfig(name="h-inline-flags", regex=["(?i)coffee"], sources=["bench"]),
        RuleConfig(name="h-symbols", symbols=["TSLA", "NVDA"], sources=["reddit", "x"]),
        RuleConfig(name="h-cashtags", cashtags=["BTC", "BRK.B", "$eth"], exclude=["giveaway"]),
        RuleConfig(name="h-langs", keywords=["coffee", "Verspätung"], langs=["de", "pt-BR"]),
        RuleConfig(name="h-all-traffic-filtered", match_all=True, all_of=["refund"], exclude=["thanks"]),
        RuleConfig(name="h-all-traffic-reddit", match_all=True, sources=["reddit"]),
        RuleConfig(
            name="h-odd-entries",
            keywords=["c++", "at&t", "don't buy", "🚀", "café zürich", "straße", "#acmeair", "x_y", "fine"],
        ),
        RuleConfig(name="h-long-phrases", keywords=["acme air customer service", "flight delayed again"]),
        RuleConfig(name="h-exclude-phrase", keywords=["outage"], exclude=["acme air"]),
        RuleConfig(name="h-unicode-digits", keywords=["\uff11\uff12\uff13", "naïve"], langs=["en"]),
    ]


def make_posts() -> list[Post]:
    gen = StreamGenerator(
        seed=11,
        source="bench",
        rate=2000,
        origin=START,
        plan=ScenarioPlan(first_after=1, every=2, duration=1, kinds=("brand_crisis", "ticker_pump")),
    )
    rng = random.Random("rules-equivalence")
    posts = []
    ts = START
    for seq in range(1, POSTS + 1):
        when = datetime.fromtimestamp(ts, UTC)
        post = gen.post(seq, ts, when, when)
        ts += 1.0 / gen.rate_at(ts)
        text = post.text
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            at = rng.randrange(len(text) + 1)
            fragment = rng.choice(FRAGMENTS)
            text = text[:at] + rng.choice(SEPARATORS) + fragment + rng.choice(SEPARATORS) + text[at:]
        lang = post.lang if rng.random() < 0.5 else rng.choice(LANGS)
        posts.append(dataclasses.replace(post, text=text, lang=lang, source=rng.choice(SOURCES)))
    return posts


def rule_set(texts: list[str]) -> list[RuleConfig]:
    """The generated rules with the hand-made ones spread among them (config order is checked too)."""
    rules = generated_rules(300, texts, 3)
    for offset, rule in enumerate(hand_rules()):
        rules.insert(offset * 19 % len(rules), rule)
    return rules


# -- the reference ----------------------------------------------------------------------------------

_CASHTAG_SPEC = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9.]{0,9})(?![A-Za-z0-9])")


@dataclasses.dataclass(frozen=True)
class Spec:
    """A rule's fields as sets, read once: the loop over every rule for every post is the test's cost."""

    name: str
    keywords: frozenset[str]
    cashtags: frozenset[str]
    symbols: tuple[str, ...]
    regex: tuple[str, ...]
    all_of: frozenset[str]
    exclude: frozenset[str]
    sources: frozenset[str]
    langs: frozenset[str]
    match_all: bool

    @classmethod
    def of(cls, rule: RuleConfig) -> Spec:
        return cls(
            rule.name,
            frozenset(rule.keywords),
            frozenset(rule.cashtags),
            tuple(rule.symbols),
            tuple(rule.regex),
            frozenset(rule.all_of),
            frozenset(rule.exclude),
            frozenset(rule.sources),
            frozenset(rule.langs),
            rule.match_all,
        )


class Reference:
    """Each rule on its own, each term by its own regex over the whole case-folded text."""

    def __init__(self, rules: list[RuleConfig]) -> None:
        self.rules = [Spec.of(rule) for rule in rules]
        self._terms: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
        for term in {t for rule in self.rules for t in rule.keywords | rule.all_of | rule.exclude}:
            parts = term.casefold().split()
            body = r"\s+".join(re.escape(part) for part in parts)
            pattern = re.compile(rf"(?<!\w){body}(?!\w)")
            self._terms.setdefault(" ".join(parts), []).append((term, pattern))

    def match(self, post: Post) -> list[str]:
        text = post.text
        folded = text.casefold()
        # Every term, searched for on its own. (The substring test only saves the test time: where
        # the regex matches, the text with its whitespace runs made single spaces holds the parts
        # joined by single spaces.)
        spaced = " ".join(folded.split())
        present = {
            term
            for joined in filter(spaced.__contains__, self._terms)
            for term, pattern in self._terms[joined]
            if pattern.search(folded)
        }
        cashtags = {tag.rstrip(".").upper() for tag in _CASHTAG_SPEC.findall(text)}
        lang = (post.lang or "").lower().replace("_", "-")
        names = []
        for rule in self.rules:
            triggered = (
                rule.match_all
                or not present.isdisjoint(rule.keywords)
                or not cashtags.isdisjoint(rule.cashtags)
                or any(re.search(rf"(?<!\w){re.escape(s)}(?!\w)", text) for s in rule.symbols)
                or any(re.search(p, text, re.IGNORECASE) for p in rule.regex)
            )
            if not (rule.keywords or rule.cashtags or rule.symbols or rule.regex or rule.match_all):
                triggered = True  # a rule of all_of alone: all_of decides
            if not triggered or not present.issuperset(rule.all_of) or not present.isdisjoint(rule.exclude):
                continue
            if rule.sources and post.source not in rule.sources:
                continue
            if rule.langs and lang not in rule.langs and lang.partition("-")[0] not in rule.langs:
                continue
            names.append(rule.name)
        return names


# -- the comparison ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Post], list[RuleConfig], list[list[str]]]:
    posts = make_posts()
    rules = rule_set([p.text for p in posts])
    reference = Reference(rules)
    return posts, rules, [reference.match(post) for post in posts]


def mismatches(
    posts: list[Post], expected: list[list[str]], match: Callable[[Post], list[CompiledRule]]
) -> list[str]:
    out = []
    for post, want in zip(posts, expected, strict=True):
        got = [rule.name for rule in match(post)]
        if got != want:
            out.append(f"{post.text!r} (lang {post.lang}, source {post.source}): got {got}, want {want}")
    return out


def test_the_matcher_agrees_with_the_reference_on_every_post(
    corpus: tuple[list[Post], list[RuleConfig], list[list[str]]],
) -> None:
    posts, rules, expected = corpus
    wrong = mismatches(posts, expected, RuleMatcher(rules).match)
    assert not wrong, f"{len(wrong)} of {len(posts)} posts differ, e.g.\n" + "\n".join(wrong[:5])


def test_the_posts_exercise_every_hand_made_rule(
    corpus: tuple[list[Post], list[RuleConfig], list[list[str]]],
) -> None:
    """Each hand-made rule matches some posts and misses others, and most posts match a generated
    rule beside the all-traffic one: a comparison where nothing matches would prove nothing."""
    posts, _, expected = corpus
    for rule in hand_rules():
        hits = sum(rule.name in names for names in expected)
        assert 0 < hits < len(posts), (rule.name, hits)
    several = sum(len([n for n in names if not n.startswith("h-")]) > 1 for names in expected)
    assert several > len(posts) // 4


def test_the_comparison_catches_a_dropped_filter(
    corpus: tuple[list[Post], list[RuleConfig], list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above can fail: a matcher that forgets exclude and the source and language filters
    disagrees with the reference."""
    posts, rules, expected = corpus
    monkeypatch.setattr(CompiledRule, "accepts", lambda self, post, found: self.all_of <= found)
    assert mismatches(posts, expected, RuleMatcher(rules).match)


def test_the_comparison_catches_a_phrase_matched_across_punctuation(
    corpus: tuple[list[Post], list[RuleConfig], list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """And a matcher that takes punctuation for whitespace between a phrase's words ("acme. air" for
    "acme air") disagrees too: here its tokenizer makes every ASCII non-word character a space."""
    posts, rules, expected = corpus
    loose = bytes(b if b >= 0x80 or chr(b).isalnum() or chr(b) == "_" else ord(" ") for b in range(256))
    monkeypatch.setattr(engine_rules, "_SEPARATORS", loose)
    assert mismatches(posts, expected, RuleMatcher(rules).match)


# -- the tokens -------------------------------------------------------------------------------------

# Word characters, ASCII and other separators, and characters that case folding changes (ß, ﬁ).
TOKEN_CHARS = st.sampled_from(
    [*"ab Z9_ \t\n.,'#$&-", "é", "ß", "✨", "\N{NO-BREAK SPACE}", "\N{EM SPACE}", "\x00", "\x1c", "ﬁ"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKEN_CHARS, max_size=24).map("".join))
def test_word_tokens_are_the_words_with_a_mark_where_more_than_whitespace_separates_them(text: str) -> None:
    """What the pair lookup relies on: the words of `word_tokens` are those of `re.findall(r"\\w+")`,
    and two words are neighbours in the tokens exactly when only whitespace separates them."""
    folded = text.casefold()
    tokens = engine_rules.word_tokens(folded)
    runs = list(re.finditer(r"\w+", folded))
    assert [t for t in tokens if re.fullmatch(r"\w+", t)] == [m.group() for m in runs]
    word_at = [i for i, t in enumerate(tokens) if re.fullmatch(r"\w+", t)]
    for (left, right), (i, j) in zip(itertools.pairwise(runs), itertools.pairwise(word_at), strict=True):
        only_whitespace = folded[left.end() : right.start()].isspace()
        assert (j == i + 1) == only_whitespace, (folded, tokens)
