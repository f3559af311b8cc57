"""Realistic rule sets for `harvester bench`: 1, 100 or 1,000 rules of about ten keywords each.

Whoever runs 1,000 rules (an agency, a trading desk) watches many brands, products and tickers, and
any one stream mentions few of them: most keywords rarely or never match, a handful of rules match
each post. A benchmark whose rules all match every post, or none, would measure something else, so:

* rule 1 of every set is the all-traffic rule (someone watching overall sentiment), so every post is
  scored once and the ratio to VADER alone measures what the rules cost on top of VADER;
* then a rule per brand and ticker of the synthetic stream (what it talks about);
* then watch rules for invented companies: the name, its compact form and hashtag, product and issue
  phrases ("<name> app", "<name> outage"), a few cashtags, often a topic word ("mortgage"), and
  mostly a word or phrase the stream itself uses (how real rules come to match everyday chatter:
  "coffee", "flight delayed"), so matches spread over many rules and not only the brand rules;
  words and phrases that are in more than 2% of posts are left out, as no one watches "today".

Sets are prefixes of one list: the 100-rule set is the first 100 rules of the 1,000-rule set.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Sequence

from harvester.config.schema import RuleConfig
from harvester.sources.synthetic_text import BRANDS, TICKERS


def _words(block: str) -> tuple[str, ...]:
    """One entry per whitespace-separated word: keeps long word lists readable."""
    return tuple(block.split())


# Words no one writes a rule for; they also keep bigrams like "of the" out of the stream vocabulary.
_STOPWORDS = frozenset(
    _words("""
    about after again also always an and any are as at be been before being but by can cannot could
    did do does doing done for from get got had has have how i if in into is it its just like lol
    made make more most much my no not now of off on one only or our out over really same so some
    still such than that the their them then there these they this those through to too up very
    was we well were what when where which while who why will with would you your ever every even
    going gonna here last next other own since until yet first time today week back thing things
    honestly finally literally actually someone anyone everyone
    """)
)
_WORD = re.compile(r"[a-z][a-z']+")
# Links, mentions, hashtags and cashtags are not words of the text: keep their pieces out.
_NOT_WORDS = re.compile(r"https?://\S+|[@#$]\w+")
_MAX_SHARE = 0.02  # no keyword that alone matches more than 2% of posts: no one watches "today"
_VOCAB_SAMPLE = 20_000

_SYLLABLES = _words("""
    ab al an ar bel bri cal cor dan del dra en fen gal hal ix jor ka kel lan lor lu mar mer mi mon nor
    nov o pax pel qua ra ren rix ro sal sen sol ta tel ter tor tri ul va vel vik von xa ya zan zel zor
""")
_COMPANY_SUFFIXES = (
    "Labs", "Bank", "Air", "Foods", "Mobile", "Energy", "Motors", "Health", "Games", "Pay", "Cloud",
    "Travel", "Insurance", "Pharma", "Telecom", "Logistics", "Media", "Retail", "Systems", "Capital",
)  # fmt: skip
_ISSUES = (
    "app", "support", "customer service", "outage", "refund", "recall", "lawsuit", "data breach",
    "hacked", "layoffs", "earnings", "ceo", "login", "update", "delivery", "price hike", "stock",
    "review", "scam", "boycott", "new store", "subscription", "website down", "strike", "fine",
)  # fmt: skip
# Topic words a watch rule might add, mostly absent from the synthetic stream.
_TOPICS = (
    "mortgage", "inflation", "interest rates", "election", "vaccine", "earthquake", "wildfire",
    "hurricane", "heatwave", "layoff", "merger", "acquisition", "ipo", "dividend", "buyback",
    "bankruptcy", "antitrust", "tariff", "sanctions", "supply chain", "chip shortage", "recession",
    "unemployment", "housing market", "rent prices", "gas prices", "electric vehicle", "battery",
    "solar panels", "streaming service", "box office", "world cup", "olympics", "playoffs",
    "data privacy", "ransomware", "phishing", "cyberattack", "food poisoning", "flight attendants",
    "baggage", "airport security", "credit score", "overdraft", "student loans", "pension",
)  # fmt: skip


def stream_vocabulary(texts: Sequence[str]) -> list[str]:
    """Words and two-word phrases that really occur in `texts`, except the very common ones."""
    sample = texts[:: max(1, len(texts) // _VOCAB_SAMPLE)]
    seen: Counter[str] = Counter()
    for text in sample:
        tokens = _WORD.findall(_NOT_WORDS.sub(" ", text.lower()))
        terms = {t for t in tokens if len(t) >= 4 and t not in _STOPWORDS}
        terms.update(f"{a} {b}" for a, b in itertools.pairwise(tokens) if not {a, b} & _STOPWORDS)
        seen.update(terms)
    ceiling = _MAX_SHARE * len(sample)
    return sorted(term for term, n in seen.items() if 2 <= n <= ceiling)


def _company_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3)))).capitalize()
        name = f"{word} {rng.choice(_COMPANY_SUFFIXES)}" if rng.random() < 0.6 else word
        if name.lower() not in taken and len(word) >= 4:
            taken.add(name.lower())
            return name


def _symbol(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.choice((3, 4, 4, 5))))


def _watch_rule(index: int, rng: random.Random, vocabulary: Sequence[str], taken: set[str]) -> RuleConfig:
    name = _company_name(rng, taken)
    compact = name.replace(" ", "").lower()
    keywords = {name.lower(), compact, f"#{compact}"}
    keywords.update(f"{name.lower()} {issue}" for issue in rng.sample(_ISSUES, rng.randint(4, 7)))
    keywords.update(rng.sample(_TOPICS, rng.choice((0, 1, 1, 2))))
    # Most rules also watch a term or two that the stream itself uses (0.9 on average).
    if vocabulary:
        keywords.update(rng.sample(vocabulary, rng.choice((0, 1, 1, 1, 1, 1, 1, 1, 2, 2))))
    cashtags = {_symbol(rng) for _ in range(rng.randint(1, 3))}
    if rng.random() < 0.05:
        cashtags.add(rng.choice(TICKERS))
    return RuleConfig(name=f"watch-{index}", keywords=sorted(keywords), cashtags=sorted(cashtags))


def generated_rules(count: int, texts: Sequence[str], seed: int = 1) -> list[RuleConfig]:
    """The first `count` rules of the benchmark's rule list (see the module docstring)."""
    rules = [RuleConfig(name="all-traffic", match_all=True)]
    for brand in BRANDS:
        compact = brand.replace(" ", "").lower()
        rules.append(
            RuleConfig(
                name=f"brand-{compact}",
                keywords=[brand.lower(), compact, f"#{compact}"]
                + [f"{brand.lower()} {issue}" for issue in _ISSUES[:7]],
            )
        )
    rules += [
        RuleConfig(name=f"ticker-{t.lower()}", cashtags=[t], keywords=[f"{t.lower()} stock", f"#{t.lower()}"])
        for t in TICKERS
    ]
    rng = random.Random(f"bench-rules:{seed}")
    vocabulary = stream_vocabulary(texts)
    taken = {brand.lower() for brand in BRANDS}
    while len(rules) < count:
        rules.append(_watch_rule(len(rules), rng, vocabulary, taken))
    return rules[:count]
