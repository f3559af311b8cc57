"""The sentiment lexicon extension: the shipped file, user files, and what the words do to scores."""

from __future__ import annotations

from pathlib import Path

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from harvester.engine.sentiment import SENTIMENT_MAX_CHARS, SentimentScorer, builtin_lexicon, read_lexicon

# The words the issue asks for, at least.
REQUIRED_WORDS = (
    "bullish bearish moon mooning rekt pump dump rug rugpull scam hacked outage downtime refund lawsuit "
    "recall boycott delayed cancelled canceled fud hodl bagholder squeeze breach leak fraud bankrupt "
    "delisted halted ath tendies"
)
REQUIRED = [*REQUIRED_WORDS.split(), "diamond hands", "rug pull"]


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    return SentimentScorer()


@pytest.fixture(scope="module")
def vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def test_the_shipped_lexicon_has_the_domain_words_each_with_a_reason() -> None:
    entries = builtin_lexicon()
    words = {entry.word for entry in entries}
    assert set(REQUIRED) <= words
    for entry in entries:
        assert -4 <= entry.score <= 4
        assert len(entry.why) >= 10, f"line {entry.line}: {entry.word!r} needs a reason"
    tokens = [entry.token for entry in entries]
    assert len(tokens) == len(set(tokens))  # a phrase never collides with a single word


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("this is a rug pull, total scam", -1.0, -0.6),
        ("$BTC mooning, so bullish", 0.6, 1.0),
        ("outage again, refund please", -1.0, -0.2),
        ("I'm so bearish on $TSLA", -1.0, -0.3),
        ("got rekt on $SOL", -1.0, -0.3),
        ("#BoycottAcme they lied", -1.0, -0.5),
        ("diamond hands, holding $GME", 0.3, 1.0),
        ("$ETH breakout to a new ATH", 0.5, 1.0),
        ("Initech announces layoffs", -1.0, -0.3),
    ],
)
def test_domain_words_move_scores_the_right_way(
    scorer: SentimentScorer, text: str, low: float, high: float
) -> None:
    assert low <= scorer.score(text) <= high


def test_the_extension_changes_what_plain_vader_misses(
    scorer: SentimentScorer, vader: SentimentIntensityAnalyzer
) -> None:
    for text in ("$BTC mooning, so bullish", "outage again, refund please", "RUG PULL!!!"):
        plain = vader.polarity_scores(text)["compound"]
        assert abs(scorer.score(text) - plain) > 0.3, text


def test_phrases_count_once_and_are_negated(scorer: SentimentScorer) -> None:
    assert scorer.prepare("a Rug-Pull, a rug   pull") == "a Rug_Pull, a rug_pull"
    assert scorer.prepare("rug pulled, rugpuller") == "rug pulled, rugpuller"  # whole words only
    assert scorer.score("not a rug pull") > 0 > scorer.score("a rug pull")


def test_everyday_senses_stay_mild(scorer: SentimentScorer) -> None:
    assert scorer.score("the new rug in my living room looks nice") > 0
    assert scorer.score("I recall the old logo was nicer") > 0


def test_elongated_words_reach_the_lexicon(scorer: SentimentScorer) -> None:
    assert scorer.prepare("loooove this, sooo good") == "love this, so good"
    assert scorer.score("loooove this") > 0.5


def test_scoring_is_capped_and_works_without_arguments() -> None:
    scorer = SentimentScorer()
    assert len(scorer.prepare("terrible " * 5000)) <= SENTIMENT_MAX_CHARS
    assert -1.0 <= scorer.score("terrible " * 5000) < -0.9


def test_a_user_file_extends_and_overrides(tmp_path: Path, scorer: SentimentScorer) -> None:
    path = tmp_path / "mine.tsv"
    path.write_text(
        "# our own words\nword\tscore\twhy\n\nmoon\t-2.5\tin our forum it means a crash\n"
        "zorbly\t3\tour product's nickname\nto the moon\t3.5\n",
        encoding="utf-8",
    )
    mine = SentimentScorer(path)
    assert scorer.score("zorbly") == 0 and mine.score("zorbly") > 0.5
    assert scorer.score("moon") > 0 > mine.score("moon")
    assert mine.prepare("$DOGE to the moon") == "DOGE to_the_moon"
    assert mine.score("$DOGE to the moon") > 0.6
    assert mine.score("rekt") == scorer.score("rekt")  # the built-in entries are still there


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("moon", "expected word<TAB>score<TAB>why, got 1"),
        ("moon\t1\twhy\textra", "got 4"),
        ("moon\thigh\tno number", "the score 'high' is not a number"),
        ("moon\t5\ttoo strong", "outside VADER's scale"),
        ("moon\tnan", "outside VADER's scale"),
        ("  \t1\tno word", "the word is empty"),
        ("bullish\t1\nbullish\t2", "'bullish' is already listed on line 3"),
    ],
)
def test_a_malformed_line_names_the_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("# comment\nword\tscore\twhy\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        SentimentScorer(path)
    message = str(info.value)
    assert message.startswith(f"{path} line {4 if 'already' in problem else 3}: ")
    assert problem in message


def test_an_unreadable_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the lexicon file"):
        SentimentScorer(tmp_path / "missing.tsv")


def test_read_lexicon_keeps_why_optional_and_lower_cases_words() -> None:
    entries = read_lexicon("Diamond   Hands\t1.5\nHODL\t0.8\tconviction\n", "x.tsv")
    assert [(e.word, e.token, e.score, e.why, e.line) for e in entries] == [
        ("diamond hands", "diamond_hands", 1.5, "", 1),
        ("hodl", "hodl", 0.8, "conviction", 2),
    ]
