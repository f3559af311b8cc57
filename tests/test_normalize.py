"""Social-text normalization: the text VADER scores, and a post's content terms."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harvester.engine.normalize import SENTIMENT_MAX_CHARS, for_sentiment, shorten_elongated, terms

# -- for_sentiment ----------------------------------------------------------------------------------


def test_urls_and_mentions_go_and_email_addresses_stay() -> None:
    text = "@united lost my bag https://t.co/AbC?x=1 see www.example.com/faq or mail jo@acme.com"
    assert for_sentiment(text) == "lost my bag see or mail jo@acme.com"


def test_retweet_marker_and_reddit_users_go() -> None:
    assert for_sentiment("RT @bob: great news") == "great news"
    assert for_sentiment("thanks u/spez and /u/kn0thing!") == "thanks and !"


def test_hashtags_and_cashtags_become_words() -> None:
    assert for_sentiment("#fail again $TSLA") == "fail again TSLA"
    assert for_sentiment("#BoycottAcme #NYC #covid19") == "Boycott Acme NYC covid19"
    assert for_sentiment("costs $100, or US$5") == "costs $100, or US$5"


def test_html_entities_are_decoded() -> None:
    assert for_sentiment("Tom &amp; Jerry &lt;3") == "Tom & Jerry <3"


def test_elongations_are_shortened() -> None:
    assert for_sentiment("soooo good!!!!!!") == "soo good!!!"
    assert for_sentiment("nooooo?????? ...... 100000") == "noo??? ... 100000"
    assert for_sentiment("cool, good, too!!!") == "cool, good, too!!!"  # real doubles and three marks stay


def test_emoji_are_kept_and_their_runs_shortened() -> None:
    assert for_sentiment("love it 😍😍😍😍😍😍") == "love it 😍😍😍"
    assert for_sentiment("❤️❤️❤️❤️❤️ ok 🔥") == "❤️❤️❤️ ok 🔥"


def test_whitespace_is_collapsed() -> None:
    assert for_sentiment("  so\n\n  much\tspace  ") == "so much space"


def test_long_texts_are_capped_at_a_word() -> None:
    text = "word " * 1000
    capped = for_sentiment(text)
    assert len(capped) <= SENTIMENT_MAX_CHARS
    assert len(capped) > SENTIMENT_MAX_CHARS - 10
    assert capped.endswith("word")
    huge = for_sentiment("ab" * 50_000)  # no space to cut at: a hard cut
    assert len(huge) == SENTIMENT_MAX_CHARS


def test_a_vocabulary_picks_the_known_short_form() -> None:
    known = {"love", "so", "good", "bad"}
    assert shorten_elongated("loooove sooo goooood baaaad hmmmm", known) == "love so good bad hmm"
    assert shorten_elongated("loooove sooo") == "loove soo"
    assert for_sentiment("sooo happy", {"so"}) == "so happy"


@given(st.text(alphabet=st.sampled_from(list("ab #@$&!😂 \n.:/hwtps")), max_size=3000))
def test_for_sentiment_is_capped_and_single_spaced(text: str) -> None:
    out = for_sentiment(text)
    assert len(out) <= SENTIMENT_MAX_CHARS
    assert "  " not in out and out == out.strip() and "\n" not in out


# -- terms ------------------------------------------------------------------------------------------


def test_terms_contract() -> None:
    text = (
        "@acmeair My bag is LOST again!! #AcmeFail #acmefail $tsla $BTC. Lost 3 bags in 2024, "
        "the Acme's app https://acme.com/help is sooooo broken 😡 don't fly q3"
    )
    assert terms(text) == [
        "bag", "lost", "acmefail", "$TSLA", "$BTC", "bags", "acme", "app", "soo", "broken", "fly", "q3",
    ]  # fmt: skip


def test_terms_skip_stopwords_short_words_numbers_and_html() -> None:
    assert terms("I am at the 737 of a x") == []
    assert terms("Tom &amp; Jerry") == ["tom", "jerry"]
    assert terms("Don\u2019t panic, it\u2019s fine") == ["panic", "fine"]
    assert terms("u/spez www.reddit.com/r/x great") == ["great"]


def test_terms_keep_other_languages() -> None:
    assert terms("Der Zug hatte Verspätung") == ["der", "zug", "hatte", "verspätung"]
