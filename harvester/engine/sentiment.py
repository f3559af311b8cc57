"""VADER sentiment with a trading and brand-crisis lexicon, computed once per matched post.

VADER's lexicon rates general English, so the words a market or a brand crisis is talked about in
are missing ("bullish", "rekt", "outage", "rugpull") or rated for another sense ("lawsuit" -0.9).
`harvester/data/lexicon.tsv` adds them; a user file in the same format extends or overrides it.
Each line is `word<TAB>score<TAB>why`. Why each kind of entry has its score:

- Clear market direction or loss (bullish/bearish, mooning, rekt, delisted) is scored like the
  general words of the same strength VADER already has ("confident" 2.2, "bad" -2.5).
- Fraud and theft (rugpull, ponzi, scammer) are as strong as VADER's "fraud" (-2.8).
- Words with an everyday neutral sense (moon, rug, recall, squeeze, pump, refund) are damped, so a
  post about the bathroom rug or something the poster recalls is not coloured much.
- Acronyms written in capitals (ATH, HODL) are scored a little lower than their meaning: VADER adds
  0.733 to a capitalised sentiment word in a post that is not all capitals.
- VADER's own entries are kept unless the crisis sense is clearly stronger than the general word
  ("lawsuit", "boycott"); some are repeated in the file, unchanged, so the vocabulary is in one place.
- Phrases ("rug pull", "diamond hands") are entries with spaces. VADER reads single tokens, so their
  words are joined before scoring ("rug pull" and "rug-pull" become "rug_pull", which the lexicon
  holds); the phrase counts once, and VADER's negation ("not a rug pull") still applies to it.

The text VADER sees is `normalize.for_sentiment(text)`: URLs and mentions dropped, hashtags and
cashtags made words, elongations shortened, length capped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentimentIntensityAnalyzer

from harvester.engine.normalize import SENTIMENT_MAX_CHARS, for_sentiment

__all__ = [
    "SENTIMENT_MAX_CHARS",
    "LexiconEntry",
    "SentimentScorer",
    "builtin_lexicon",
    "read_lexicon",
    "read_lexicon_file",
]

VADER_MIN, VADER_MAX = -4.0, 4.0
_HEADER = ("word", "score", "why")
_PHRASE_GAP = re.compile(r"[\s-]+")


@dataclass(frozen=True, slots=True)
class LexiconEntry:
    word: str  # lower case; words separated by one space in a phrase
    score: float
    why: str
    line: int

    @property
    def token(self) -> str:
        """The single token VADER looks up: a phrase's words joined by "_"."""
        return self.word.replace(" ", "_")


def _parse_line(line: str) -> tuple[str, float, str]:
    """One `word<TAB>score[<TAB>why]` line; ValueError says what is wrong with it."""
    fields = line.split("\t")
    if len(fields) not in (2, 3):
        raise ValueError(f"expected word<TAB>score<TAB>why, got {len(fields)} tab-separated field(s)")
    word = " ".join(fields[0].lower().split())
    if not word:
        raise ValueError("the word is empty")
    try:
        score = float(fields[1])
    except ValueError:
        raise ValueError(f"the score {fields[1].strip()!r} is not a number") from None
    if not (math.isfinite(score) and VADER_MIN <= score <= VADER_MAX):
        raise ValueError(f"the score {score:g} is outside VADER's scale of -4 to 4")
    return word, score, fields[2].strip() if len(fields) == 3 else ""


def read_lexicon(text: str, origin: str) -> list[LexiconEntry]:
    """Parse a lexicon file's text. Blank lines, `#` comments and a `word score why` header are
    skipped; any other malformed line raises ValueError naming `origin` and the line number."""
    entries: list[LexiconEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if tuple(f.strip().lower() for f in line.split("\t"))[:3] in (_HEADER, _HEADER[:2]):
            continue
        try:
            word, score, why = _parse_line(line)
        except ValueError as exc:
            raise ValueError(f"{origin} line {number}: {exc}") from None
        if word in seen:
            raise ValueError(f"{origin} line {number}: {word!r} is already listed on line {seen[word]}")
        seen[word] = number
        entries.append(LexiconEntry(word, score, why, number))
    return entries


@cache
def builtin_lexicon() -> tuple[LexiconEntry, ...]:
    """The lexicon shipped with harvester (parsed once per process)."""
    resource = files("harvester").joinpath("data/lexicon.tsv")
    return tuple(read_lexicon(resource.read_text(encoding="utf-8"), "harvester/data/lexicon.tsv"))


def read_lexicon_file(path: Path) -> list[LexiconEntry]:
    """A user's lexicon file; ValueError (naming the file, and the line if one is malformed) when
    it cannot be read or parsed. Config validation can call this to fail at start-up."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the lexicon file: {exc}") from None
    return read_lexicon(text, str(path))


class SentimentScorer:
    """VADER compound scores with harvester's lexicon, plus `extra_lexicon` (a file in the same
    format, loaded last so that it wins)."""

    def __init__(self, extra_lexicon: Path | None = None) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        entries = list(builtin_lexicon())
        if extra_lexicon is not None:
            entries += read_lexicon_file(Path(extra_lexicon))
        lexicon: dict[str, float] = self._analyzer.lexicon
        phrases: set[str] = set()
        for entry in entries:
            lexicon[entry.token] = entry.score
            if " " in entry.word:
                phrases.add(entry.word)
        self._phrases = self._phrase_patterns(phrases)
        # Words an elongation may shorten to ("loooove" -> "love", "sooo" -> "so").
        self._vocabulary = frozenset(lexicon) | frozenset(BOOSTER_DICT)

    @staticmethod
    def _phrase_patterns(phrases: set[str]) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
        """A cheap hint run first on the lower-cased text, and the pattern that finds the phrases.

        The hint has no look-arounds and no IGNORECASE, so `re` can skip ahead to the first letters of
        the phrases: about a third of the cost of the exact pattern, which then runs on the few posts
        the hint finds something in.
        """
        if not phrases:
            return None
        longest_first = sorted(phrases, key=len, reverse=True)
        body = "|".join(r"[\s-]+".join(re.escape(w) for w in p.split(" ")) for p in longest_first)
        return re.compile(body), re.compile(rf"(?<![\w-])(?:{body})(?![\w-])", re.IGNORECASE)

    def prepare(self, text: str) -> str:
        """The exact text VADER scores: normalized for sentiment, with lexicon phrases joined."""
        text = for_sentiment(text, self._vocabulary)
        if self._phrases is not None and self._phrases[0].search(text.lower()):
            text = self._phrases[1].sub(lambda m: _PHRASE_GAP.sub("_", m.group(0)), text)
        return text

    def score(self, text: str) -> float:
        """VADER compound score in [-1, 1]."""
        return float(self._analyzer.polarity_scores(self.prepare(text))["compound"])
