"""Social-text normalization: what sentiment scoring sees, and which terms a post is about.

Pure functions that cost a few microseconds on a post, so they can run on every matched post:

- `for_sentiment(text)` is what VADER scores. VADER splits on whitespace and looks each token up in
  its lexicon, so the noise social posts carry is removed or reshaped first: URLs and @mentions (never
  sentiment, and a long URL costs VADER time), `#word` and `$TSLA` become plain words (`#fail` then
  counts; a camel-case hashtag `#BoycottAcme` becomes two words), HTML entities are decoded (`&lt;3`
  is the heart emoticon `<3`), elongations are shortened (letters to two, "soooo" -> "soo";
  punctuation and emoji runs to three, as VADER's "!" emphasis stops growing at four) and the
  text is capped at `SENTIMENT_MAX_CHARS` (VADER's cost grows faster than the length). Emoji are
  kept: VADER turns many into words it scores.
- `terms(text)` is a post's content terms, for the "top co-occurring terms" evidence of a signal and
  for counting crisis terms. Each term appears once, in order of first appearance: lower-case words
  (starting with a letter, two characters or more, English stopwords, URLs, @mentions and numbers
  left out, elongations shortened like above, a possessive 's dropped), hashtags as their bare
  lower-case word (`#AcmeFail` -> `acmefail`), and cashtags as `$` plus the upper-case symbol
  (`$tsla` -> `$TSLA`). Emoji are not terms.
"""

from __future__ import annotations

import html
import re
from collections.abc import Container

# VADER's cost grows superlinearly with length (emoji are expanded to words, every token looks back
# three tokens): 1,000 characters keeps the worst case to a few milliseconds and still covers the
# whole of almost every post.
SENTIMENT_MAX_CHARS = 1000

# URLs, @mentions, hashtags and the "$" of a cashtag, in one scan. No look-behind and no IGNORECASE:
# either would make `re` try every alternative at every character. `_social` checks instead that
# the match does not continue a word (an e-mail address "jo@acme.com", "US$AAPL").
_SOCIAL = re.compile(r"(?:[Hh][Tt][Tt][Pp][Ss]?://|[Ww][Ww][Ww]\.)\S+|@\w+|#(\w+)|\$(?=[A-Za-z])")
_RETWEET = re.compile(r"^RT\s+@\w+:?\s*")
_REDDIT_USER = re.compile(r"(?<![\w/])/?u/[A-Za-z0-9_-]+")
_CAMEL_HUMP = re.compile(r"(?<=[a-z])(?=[A-Z])")
# Any character three times in a row: one cheap scan that tells whether the elongation patterns
# below need to run at all. (An emoji with a variation selector, such as a run of "❤️", is two
# characters; the presence of the selector is checked separately.)
_TRIPLE = re.compile(r"(.)\1\1")
# A whole word with an elongation. Tried only at word starts (the look-behind), so that a long word
# costs linear time, not quadratic.
_ELONGATED_WORD = re.compile(r"(?<!\w)\w*?([^\W\d_])\1{2,}\w*")
_LETTER_RUN = re.compile(r"([^\W\d_])\1{2,}")
# The same punctuation mark or emoji (with its optional variation selector) four times or more.
_SYMBOL_RUN = re.compile(r"([^\w\s]\ufe0f?)\1{3,}")
# terms(): what is not a term (URLs, @mentions, Reddit's u/name; `_not_term` keeps those inside a
# word), then the terms of the lower-cased text: a cashtag, or a word starting with a letter (a
# hashtag's "#" is left behind, and so is a possessive "'s", which becomes the one-letter word "s").
_NOT_TERMS = re.compile(r"(?:[Hh][Tt][Tt][Pp][Ss]?://|[Ww][Ww][Ww]\.)\S+|@\w+|/?u/[A-Za-z0-9_-]+")
_TERM = re.compile(r"\$[a-z][a-z0-9]{0,9}(?:\.[a-z0-9]{1,4})?(?![a-z0-9])|[^\W\d_]\w*(?:'(?!s\b)\w+)*")


def _word_set(block: str) -> frozenset[str]:
    return frozenset(block.split())


STOPWORDS = _word_set(
    """
    a about above after again against all almost also although am among an and another any anyone
    anything are aren't around as at away back be became because been before being below best better
    between both but by can can't cannot could couldn't did didn't do does doesn't doing don't done
    down during each either else enough even ever every everyone everything few for from further get
    gets getting go goes going gone got gotten had hadn't has hasn't have haven't having he he'd he'll
    he's her here here's hers herself him himself his how how's however i i'd i'll i'm i've if in into
    is isn't it it's its itself just know last least less let let's like made make makes many may maybe
    me might more most much must mustn't my myself near need needs neither never new next no nor not
    nothing now of off often oh ok okay on once one only or other others otherwise ought our ours
    ourselves out over own per perhaps please put quite rather really right said same say says see seen
    shall shan't she she'd she'll she's should shouldn't since so some someone something soon still such
    sure take than that that's the their theirs them themselves then there there's these they they'd
    they'll they're they've thing things think this those though through thus till to today too toward
    towards under until up upon us very via want wants was wasn't way we we'd we'll we're we've well
    were weren't what what's whatever when when's where where's whether which while who who's whom whose
    why why's will with within without won't would wouldn't yeah yes yet you you'd you'll you're you've
    your yours yourself yourselves
    im ive id ill youre dont didnt doesnt cant wont isnt arent wasnt werent couldnt wouldnt shouldnt
    thats theres whats lets u ur r ya yall gonna wanna gotta kinda sorta rt amp lol lmao omg tbh imo
    pls plz http https www com
    """
)


def _continues_a_word(match: re.Match[str]) -> bool:
    """Whether the match is inside a word or an address ("jo@acme.com", "US$AAPL", "menu/u/x")."""
    start = match.start()
    return start > 0 and (match.string[start - 1].isalnum() or match.string[start - 1] in "_@#&$/")


def _social(match: re.Match[str]) -> str:
    """`_SOCIAL`'s replacement: a hashtag's word (camel case split), nothing for "$", else a space."""
    if _continues_a_word(match):
        return match.group(0)
    tag = match.group(1)
    if tag is not None:
        return tag if tag.isupper() else _CAMEL_HUMP.sub(" ", tag)
    return "" if match.group(0) == "$" else " "


def _not_term(match: re.Match[str]) -> str:
    return match.group(0) if _continues_a_word(match) else " "


def shorten_elongated(text: str, vocabulary: Container[str] | None = None) -> str:
    """Shorten letters repeated three times or more to two ("soooo" -> "soo", "goooood" -> "good").

    Two keeps the real double letters of "good" and "cool". With a `vocabulary` (lower-case words a
    scorer knows), an elongated word whose two-letter form is unknown but whose one-letter form is
    known takes the one-letter form ("loooove" -> "love", not "loove").
    """
    if vocabulary is None:
        return _LETTER_RUN.sub(r"\1\1", text)

    def shorten(match: re.Match[str]) -> str:
        word = match.group(0)
        two = _LETTER_RUN.sub(r"\1\1", word)
        if two.lower() in vocabulary:
            return two
        one = _LETTER_RUN.sub(r"\1", word)
        return one if one.lower() in vocabulary else two

    return _ELONGATED_WORD.sub(shorten, text)


def cap_words(text: str, limit: int = SENTIMENT_MAX_CHARS) -> str:
    """`text` cut to at most `limit` characters, at a space when one is near the end."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ", limit - 50)
    return cut[:space] if space > 0 else cut


def for_sentiment(text: str, vocabulary: Container[str] | None = None) -> str:
    """The text VADER should score (see the module docstring); `vocabulary` as in `shorten_elongated`."""
    # Bound the work of the regexes below on a pathological input; the result is capped anyway.
    text = text[: 4 * SENTIMENT_MAX_CHARS]
    if "&" in text:
        text = html.unescape(text)
    if text.startswith("RT @"):
        text = _RETWEET.sub("", text)
    if "@" in text or "#" in text or "$" in text or "://" in text or "www." in text or "WWW." in text:
        text = _SOCIAL.sub(_social, text)
    if "u/" in text:
        text = _REDDIT_USER.sub(" ", text)
    if _TRIPLE.search(text) or "\ufe0f" in text:
        text = _SYMBOL_RUN.sub(r"\1\1\1", shorten_elongated(text, vocabulary))
    return cap_words(" ".join(text.split()))


def terms(text: str) -> list[str]:
    """The post's content terms, each once, in order (the contract is in the module docstring)."""
    if "&" in text:
        text = html.unescape(text)
    if "@" in text or "://" in text or "u/" in text or "www." in text or "WWW." in text:
        text = _NOT_TERMS.sub(_not_term, text)
    text = text.lower()
    if "\u2019" in text:
        text = text.replace("\u2019", "'")  # a typographic apostrophe: the same "don't"
    if _TRIPLE.search(text):
        text = _LETTER_RUN.sub(r"\1\1", text)
    return list(
        dict.fromkeys(
            term.upper() if term[0] == "$" else term
            for term in _TERM.findall(text)
            if len(term) > 1 and term not in STOPWORDS
        )
    )
