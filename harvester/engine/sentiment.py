"""VADER sentiment, computed once per matched post, on a length-capped text."""

from __future__ import annotations

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# VADER's cost grows superlinearly with length (emoji are expanded to words, every token looks back
# three tokens): 1,000 characters keeps the worst case to a few milliseconds and still covers the
# whole of almost every post.
SENTIMENT_MAX_CHARS = 1000


class SentimentScorer:
    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, text: str) -> float:
        """VADER compound score in [-1, 1]."""
        return float(self._analyzer.polarity_scores(text[:SENTIMENT_MAX_CHARS])["compound"])
