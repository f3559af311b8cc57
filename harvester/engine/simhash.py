"""64-bit SimHash of short social texts, the band keys that find near neighbours quickly, and the
small text helpers both need.

SimHash (Charikar 2002) gives similar texts fingerprints that differ in few bits: each feature (here a
word) hashes to 64 bits, every bit position takes a vote over the features, and the majority wins.
The expected Hamming distance between two fingerprints grows with the angle between the texts'
word-count vectors, so one word swapped in a 30-word message moves about 5 of the 64 bits while
unrelated texts sit near 32.

Words rather than multi-word shingles: a swapped word changes one word but two word pairs, and on
texts this short that shows. Measured on the synthetic campaign's variants against their message
(a word or phrase swapped, an emoji or hashtag added): median 7 bits apart with words, 9 with word
pairs; within 8 bits, 74% against 47%. Unrelated everyday posts: median 30 bits, 1st percentile 17.

Speed matters (this runs on every matched post), so the vote is counted without a per-bit loop: each
word's hash is cached pre-spread into 64 one-byte lanes of a 512-bit integer, a text's lanes are
summed with one `sum()`, a bias per lane turns "more than half" into the lane's top bit, and the 64
top bits are gathered back with a byte translation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from itertools import chain

BITS = 64
# One byte per bit position: the vote of at most 255 words fits in a lane without overflowing.
MAX_FEATURES = 255
_LANE_ONES = int.from_bytes(b"\x01" * BITS, "little")
_TO_ASCII_BITS = bytes.maketrans(b"\x00\x01", b"01")

# URLs and @mentions differ between copies of one message (tracking links, reply targets) without
# changing what it says, so they are dropped; so are punctuation and emoji (everything but \w runs).
# "RT @user:" prefixes go with the mention.
# (Three alternatives that each start with a literal, not a group: the regex engine then skips, in C,
# every position that is not an "h", a "w" or an "@", and the substitution takes half the time.)
_NOISE = re.compile(r"https?://\S+|www\.\S+|@\w+")
_WORD = re.compile(r"\w+")
_NON_ASCII_WORD_CHAR = re.compile(r"[^\W\x00-\x7f]")  # a word character outside ASCII (é, ß, 日)
_REPOST = re.compile(r"\s*RT @\w+")
_ASCII_WORD_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_ASCII_NON_WORD_TO_SPACE = bytes(c if c in _ASCII_WORD_BYTES else 0x20 for c in range(256))


def words(text: str) -> list[str]:
    """The lowercase words of `text`, without URLs, @mentions, punctuation or emoji ('#tag' -> 'tag').

    Every word, in order and as often as it occurs, unlike `normalize.terms` (content terms, each
    once): without its stopwords a message is shorter, and one swapped word a bigger share of it.
    """
    text = text.lower()
    if "@" in text or "://" in text or "www." in text:
        text = _NOISE.sub(" ", text)
    if text.isascii():
        # The same words as the pattern below (in ASCII, \w is [a-z0-9_] once lowered) for about
        # half its cost: bytes are translated and split in C, without a match object per word.
        return text.encode().translate(_ASCII_NON_WORD_TO_SPACE).decode().split()
    if _NON_ASCII_WORD_CHAR.search(text) is None:
        # Its only characters outside ASCII are not word characters (emoji, dashes, curly quotes:
        # nine in ten non-ASCII posts): they part words as a space does, so each becomes a "?",
        # which the ASCII way turns into a space. A third cheaper than the pattern, search included.
        return text.encode("ascii", "replace").translate(_ASCII_NON_WORD_TO_SPACE).decode().split()
    return _WORD.findall(text)


def is_repost(text: str) -> bool:
    """A pure repost ("RT @user: ..."): someone else's words and, often, someone else's counts."""
    return "RT @" in text and _REPOST.match(text) is not None  # the substring test is cheaper


# Each byte value spread into 8 bytes of 0 or 1, lowest bit first.
_SPREAD_BYTE = tuple(bytes((value >> bit) & 1 for bit in range(8)) for value in range(256))


def _spread_word(word: str) -> int:
    """The word's 64-bit hash with bit i moved to the lowest bit of byte i."""
    # blake2b, not hash(): fingerprints are snapshotted and must mean the same after a restart.
    digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
    # Bit i of the little-endian hash is bit i % 8 of its byte i // 8: spread byte by byte.
    return int.from_bytes(b"".join(map(_SPREAD_BYTE.__getitem__, digest)), "little")


class _SpreadCache(dict[str, int]):
    """`_spread_word` of each word seen, looked up in C (`dict.__getitem__`, `__missing__` only for a
    new word): words repeat, and an `lru_cache` lookup costs more than the sum it feeds. Emptied when
    full, so memory stays bounded whatever the vocabulary."""

    MAX_WORDS = 1 << 16

    def __missing__(self, word: str) -> int:
        if len(self) >= self.MAX_WORDS:
            self.clear()
        spread = self[word] = _spread_word(word)
        return spread


_SPREAD = _SpreadCache()
_spread = _SPREAD.__getitem__


# count > n/2  <=>  count + 127 - n//2 >= 128, and the sum stays below 256: no carry between lanes.
# The bias of every lane for n features, worked out once (a 512-bit product per post otherwise).
_BIAS = tuple((127 - n // 2) * _LANE_ONES for n in range(MAX_FEATURES + 1))


def simhash(features: Sequence[str]) -> int:
    """The 64-bit SimHash of `features` (each counted as often as it occurs; at most MAX_FEATURES)."""
    n = len(features)
    if n > MAX_FEATURES:
        features = features[:MAX_FEATURES]
        n = MAX_FEATURES
    if n == 0:
        return 0
    votes = sum(map(_spread, features))  # lane i holds how many features have bit i set
    majority = ((votes + _BIAS[n]) >> 7) & _LANE_ONES
    return int(majority.to_bytes(BITS, "little").translate(_TO_ASCII_BITS)[::-1], 2)


def distance(a: int, b: int) -> int:
    """Hamming distance: how many of the 64 bits differ."""
    return (a ^ b).bit_count()


class BandSplit:
    """Find fingerprints within `max_distance` bits through four 16-bit bands.

    Fingerprints are indexed under their four band values (`keys`). A lookup (`probes`) tries each
    band's value and, when more than 3 bits may differ, its 16 one-bit neighbours too: 68 dict
    lookups. Pigeonhole: 3 differing bits leave one band intact, and 7 leave one band with at most
    one differing bit, so up to 7 the search finds every fingerprint in range; at 8 it misses the 5%
    of pairs whose differences fall exactly two in every band. Sixteen-bit keys keep the buckets
    nearly empty (SimHash bits of everyday text are not uniform: with narrower bands, shared common
    words pile fingerprints into a few buckets, and a lookup walks over a hundred of them).
    """

    BANDS = 4
    WIDTH = BITS // BANDS

    def __init__(self, max_distance: int) -> None:
        self.exact = max_distance <= 7
        flips = (0, *(1 << i for i in range(self.WIDTH))) if max_distance > 3 else (0,)
        self._flips = flips
        self._mask = (1 << self.WIDTH) - 1

    def keys(self, fingerprint: int) -> tuple[int, int, int, int]:
        """One key per band: the band's bits tagged with its index, so bands never collide."""
        # Written out for the four 16-bit bands: this runs for every placed post.
        mask = self._mask
        return (
            fingerprint & mask,
            0x10000 | ((fingerprint >> 16) & mask),
            0x20000 | ((fingerprint >> 32) & mask),
            0x30000 | ((fingerprint >> 48) & mask),
        )

    def probes(self, fingerprint: int) -> Iterator[int]:
        """The keys under which a fingerprint within `max_distance` may be indexed."""
        flips = self._flips
        return chain.from_iterable(map(key.__xor__, flips) for key in self.keys(fingerprint))
