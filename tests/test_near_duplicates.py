"""The shared near-duplicate index and the fingerprints it is built on: clusters of one post kept
as light records until a second post joins, memory bounded by `place` alone, and words, SimHash
and band keys that are the same as before they were made cheaper (fingerprints are snapshotted).

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import hashlib
import random
import re
import string

import pytest

from harvester.config.detectors import CampaignConfig
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.campaign import CampaignDetector
from harvester.engine.detectors.near_duplicates import Cluster, Lone, NearDuplicateIndex, PostRef
from harvester.engine.simhash import BandSplit, is_repost, simhash, words
from tests.helpers import CAMPAIGN_MESSAGE as MESSAGE
from tests.helpers import T0
from tests.helpers import post_at as post

START = T0.timestamp()
OTHER = "my cat knocked a plant off the shelf again this morning, classic tuesday at our place"


def index(**overrides: float) -> NearDuplicateIndex:
    settings: dict[str, float] = {"max_distance": 6, "min_chars": 30, "window": 600, "max_clusters": 100}
    settings.update(overrides)
    return NearDuplicateIndex(
        max_distance=int(settings["max_distance"]),
        min_chars=int(settings["min_chars"]),
        window=settings["window"],
        max_clusters=int(settings["max_clusters"]),
    )


def distinct_text(rng: random.Random) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(8))


# -- clusters of one, and what becomes of them -------------------------------------------------------
def test_a_lone_post_is_a_light_record_until_a_second_post_joins_it() -> None:
    ix = index()
    first = Observation(START, post(1, MESSAGE, "a", START), 0.0)
    lone = ix.place(first, ("acme",))
    assert isinstance(lone, Lone)
    assert (lone.seed, lone.posts, lone.fingerprint) == (first.fingerprint, 1, first.fingerprint)
    assert [(p.post.uid, p.ts) for p in lone.recent] == [(first.post.uid, START)]
    second = Observation(START + 5, post(2, MESSAGE.replace("truth", "story"), "b", START + 5), 0.0)
    cluster = ix.place(second, ("acme", "air"))
    assert isinstance(cluster, Cluster)
    assert cluster.seed == lone.seed and cluster.posts == 2
    assert (cluster.first_seen, cluster.last_seen) == (START, START + 5)
    assert [(p.post, p.rules) for p in cluster.recent] == [
        (PostRef.of(first.post), ("acme",)),
        (PostRef.of(second.post), ("acme", "air")),
    ]
    assert ix.clusters[lone.seed] is cluster and len(ix.clusters) == 1


def test_a_rule_that_starts_counting_when_a_lone_post_gets_a_neighbour_counts_both() -> None:
    ix = index()
    det = CampaignDetector("acme", CampaignConfig(min_accounts=2), index=ix)
    fired = []
    for n, (ts, text, author) in enumerate(
        [(START, MESSAGE, "a"), (START + 30, MESSAGE.replace("truth", "story"), "b")]
    ):
        obs = Observation(ts, post(n, text, author, ts), 0.0)
        obs.cluster = ix.place(obs, ("acme",))
        fired += det.observe(obs)
    assert len(fired) == 1
    assert fired[0].evidence["distinct_accounts"] == 2  # the lone post was counted too
    assert fired[0].evidence["first_seen"] == T0.isoformat()


def test_a_rule_that_counts_clusters_of_one_sees_lone_posts() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=1))
    signals = det.observe(Observation(START, post(1, MESSAGE, "a", START), 0.0))
    assert [s.evidence["distinct_accounts"] for s in signals] == [1]


def test_a_flood_of_distinct_texts_stays_within_max_clusters_without_any_tick() -> None:
    rng = random.Random(1)
    ix = index(max_clusters=50)
    for n in range(2000):
        ts = START + n * 0.01
        ix.place(Observation(ts, post(n, distinct_text(rng), f"u{n}", ts), 0.0), ("r",))
    assert len(ix.clusters) == 50
    assert len(ix.seed_of) == 50  # each lone post is indexed once, and leaves the index with its record
    assert len(ix.buckets) <= 4 * 50


def test_lone_posts_idle_for_a_window_leave_through_place_alone() -> None:
    rng = random.Random(2)
    ix = index(window=10, max_clusters=10_000)
    for n in range(1000):
        ts = START + n
        ix.place(Observation(ts, post(n, distinct_text(rng), f"u{n}", ts), 0.0), ("r",))
        assert len(ix.clusters) <= 11  # the last ten seconds, and the post just placed
    assert len(ix.seed_of) <= 11 and len(ix.buckets) <= 4 * 11


def test_an_evicted_lone_post_is_forgotten_by_the_buckets() -> None:
    ix = index(max_clusters=2)
    first = ix.place(Observation(START, post(1, MESSAGE, "a", START), 0.0), ("r",))
    assert first is not None
    for n, text in enumerate((OTHER, OTHER.replace("cat", "dog").replace("plant", "cup"))):
        ix.place(Observation(START + 1 + n, post(2 + n, text, "b", START + 1 + n), 0.0), ("r",))
    assert first.seed not in ix.clusters and first.seed not in ix.seed_of
    again = ix.place(Observation(START + 9, post(9, MESSAGE, "c", START + 9), 0.0), ("r",))
    assert isinstance(again, Lone)  # a fresh cluster of its own, not a stale one


def test_a_snapshot_keeps_promoted_clusters_and_not_lone_posts() -> None:
    ix = index()
    ix.place(Observation(START, post(1, OTHER, "x", START), 0.0), ("r",))
    for n in range(3):
        ts = START + n
        ix.place(Observation(ts, post(10 + n, MESSAGE, f"a{n}", ts), 0.0), ("r",))
    state = ix.snapshot()
    assert [row[4] for row in state["clusters"]] == [3]
    restored = index()
    restored.restore(state)
    seed = state["clusters"][0][0]
    joined = restored.place(Observation(START + 20, post(20, MESSAGE, "b", START + 20), 0.0), ("r",))
    assert isinstance(joined, Cluster) and joined.seed == seed and joined.posts == 4
    assert restored.snapshot()["clusters"][0][5] == state["clusters"][0][5]  # same members


# -- the campaign detector's shortcuts keep its answers ---------------------------------------------
def test_views_are_forgotten_through_observe_alone() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=2, window=60))
    for n in range(3):
        ts = START + n
        det.observe(Observation(ts, post(n, MESSAGE, f"a{n}", ts), 0.0))
    assert len(det.clusters) == 1
    later = START + 200
    det.observe(Observation(later, post(9, OTHER, "z", later), 0.0))
    assert len(det.clusters) == 0


def test_a_late_post_is_counted_only_while_it_is_in_the_window() -> None:
    # c's post comes late: it is behind newer ones among the view's accounts, and when d posts it has
    # left the window although the accounts before it in that order have not.
    det = CampaignDetector("acme", CampaignConfig(min_accounts=4, window=100))
    timeline = [(100.0, "a"), (105.0, "a"), (110.0, "a"), (115.0, "a"), (150.0, "b"), (50.0, "c")]
    timeline += [(155.0, "d"), (160.0, "e")]
    fired = []
    for n, (ts, author) in enumerate(timeline):
        fired += det.observe(Observation(START + ts, post(n, MESSAGE, author, START + ts), 0.0))
    assert [s.at.timestamp() for s in fired] == [START + 160]  # not at d's post: c no longer counts
    assert set(fired[0].evidence["example_authors"]) == {"a", "b", "d", "e"}


# -- words, fingerprints and band keys are those of the plain implementations ------------------------
_PLAIN_NOISE = re.compile(r"(?:https?://|www\.)\S+|@\w+")
_PLAIN_WORD = re.compile(r"\w+")


def plain_words(text: str) -> list[str]:
    return _PLAIN_WORD.findall(_PLAIN_NOISE.sub(" ", text.lower()))


def plain_simhash(features: list[str]) -> int:
    """SimHash bit by bit: each bit is set when more than half of the words' hashes have it."""
    features = features[:255]
    votes = [0] * 64
    for word in features:
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        for bit in range(64):
            votes[bit] += (digest >> bit) & 1
    return sum(1 << bit for bit in range(64) if 2 * votes[bit] > len(features))


@pytest.mark.parametrize("char", [chr(c) for c in range(128)])
def test_words_split_every_ascii_character_as_the_word_pattern_does(char: str) -> None:
    text = f"Ab{char}cD {char}x9{char}_y{char}"
    assert words(text) == plain_words(text)


def test_words_and_fingerprints_match_the_plain_implementations() -> None:
    rng = random.Random(3)
    alphabet = string.printable + "éüßñ✨💀—\u2019…日本"
    for _ in range(500):
        text = "".join(rng.choices(alphabet, k=rng.randrange(0, 120)))
        if rng.random() < 0.3:
            text += " @someone https://t.co/abc www.example.com/x RT @x: #Tag"
        assert words(text) == plain_words(text), text
        assert simhash(words(text)) == plain_simhash(words(text)), text


def test_words_of_texts_whose_only_non_ascii_characters_are_not_letters_match_too() -> None:
    # emoji, dashes, quotes and lone surrogates part words; an Arabic-Indic digit, a combining mark
    # after a letter and a dotted capital I (lowered to two characters) are the pattern's business
    rng = random.Random(5)
    symbols = "✨💀🙏🔥—\u2019…“”\u00a0\ud800"
    for _ in range(2000):
        alphabet = string.printable + symbols + rng.choice(("", "\u0660", "e\u0301", "\u0130", "ß"))
        text = "".join(rng.choices(alphabet, k=rng.randrange(1, 100)))
        assert words(text) == plain_words(text), repr(text)


def test_fingerprints_are_the_ones_snapshots_hold() -> None:
    # Computed by the implementation before it was made cheaper: a snapshot taken then must still
    # find its clusters.
    pinned = {
        "Acme Air is hiding the truth about the engine failures on their new planes": 0x0A2245A844030258,
        "Café Müller: naïve résumé ✨ über-cool #tag @you https://t.co/x": 0x4BCE9AE8B223D256,
        "just landed in lisbon and the weather is lovely, off to find coffee": 0xF28ACF295AC43A2F,
    }
    for text, fingerprint in pinned.items():
        assert simhash(words(text)) == fingerprint


def test_band_keys_are_the_band_values_tagged_with_their_index() -> None:
    rng = random.Random(4)
    bands = BandSplit(6)
    for _ in range(200):
        fingerprint = rng.getrandbits(64)
        expected = [(band << 16) | ((fingerprint >> (16 * band)) & 0xFFFF) for band in range(4)]
        assert list(bands.keys(fingerprint)) == expected


def test_a_repost_needs_its_prefix_at_the_start() -> None:
    assert is_repost("RT @someone: big news") and is_repost("  RT @a_b hello")
    assert (
        not is_repost("so true RT @someone: big news") and not is_repost("RT someone") and not is_repost("")
    )
