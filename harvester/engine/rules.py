"""Compiled rules: which rules does a post match?

The text is read once for all rules together, so the cost per post depends on the post, not on how
many rules or keywords there are. (One `re` alternation of every keyword, the obvious design, tries
every alternative at every position: its cost grows with the number of keywords.)

1. The case-folded text is cut once into its words (runs of `\\w`), in order, with a mark between
   two words wherever more than whitespace separates them (`word_tokens`): a byte table and
   `split()` do it in C, at 60% of the cost of `re.findall`; only the few pieces with non-ASCII
   characters (emoji, accents) go through a pattern. The single-word entries of every rule
   (keywords, all_of and exclude alike) and the words the step 2 looks up by word live in one set,
   and one intersection with the post's words, done in C, keeps the few that matter: 10,000
   keywords cost what ten do.
2. A phrase of plain words is found by its pairs of consecutive words, which are looked up from
   the post's pairs of neighbouring tokens in one intersection, in C: the marks keep "acme. air"
   from being the pair ("acme", "air"). A pair is the whole of a two-word phrase, so it needs
   nothing more; a longer phrase is filed under its pair the fewest other phrases use ("acme air"
   for "acme air outage", not "air outage", which every airline's rule has), looked at when that
   pair is there, and confirmed by its own small regex (that its pairs are in one place, in order)
   when all its pairs are. An entry with other characters ("c++", "#acme",
   "at&t") is filed under its word the fewest entries use and confirmed by its regex when all its
   words are there; an entry with no word at all (an emoji) is always checked.
3. Cashtags are pulled out by one pattern when the text holds a "$"; bare symbols are looked up,
   case-sensitively, among the post's words as written.
4. The rules those hit, plus the match_all rules, are the candidates. A candidate is kept when its
   source and language filters pass, every all_of entry was found and no exclude entry was (most
   rules have none of these, and are kept without a look). A rule's own regexes run only for that
   rule, and only when nothing else matched it and its filters, all_of and exclude already pass.

Keywords match whole words, so a keyword also matches inside a hashtag or mention made of just that
word: `acme` matches "#acme" and "@acme", not "#acmeair" (list `acmeair` for that); the keyword
`#acme` matches only the hashtag.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from harvester.config.schema import RuleConfig
from harvester.models import Post

_WORD = re.compile(r"\w+")


def _separator_table() -> bytes:
    """For `word_tokens`: ASCII whitespace becomes a space and every other ASCII character that `\\w`
    does not match becomes NUL (set apart as a mark later). Bytes of non-ASCII characters are kept,
    so their pieces stay whole for `_TOKEN` to cut."""
    table = bytearray(range(256))
    for byte in range(0x80):
        char = chr(byte)
        if not (char.isalnum() or char == "_"):  # exactly what `\w` matches in ASCII
            table[byte] = ord(" ") if char.isspace() else 0
    return bytes(table)


_SEPARATORS = _separator_table()
_TOKEN = re.compile(r"\w+|\W")
# Group references change meaning when patterns are joined into one alternation.
_GROUP_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")
# A trailing "." is the end of the sentence ("buying $BTC."), not part of the symbol ($BRK.B). The
# "$" comes first and the look behind it after (see `_whole`): "$" not after a word character or "$".
_CASHTAG = re.compile(r"\$(?<![\w$]\$)([A-Za-z][A-Za-z0-9.]{0,9})(?![A-Za-z0-9])")


def term_key(term: str) -> str:
    """How an entry is compared: case-folded, with each run of whitespace made one space."""
    return " ".join(term.casefold().split())


def _whole(term: str) -> re.Pattern[str]:
    """`term` (its parts separated by any whitespace) where no word character is next to it.

    The look-behind for a word character before the term comes after the term's first part:
    `acme(?<!\\wacme)` means what `(?<!\\w)acme` means, but a pattern that starts with a literal is
    searched by skipping ahead to that literal in C, where one that starts with an assertion is tried
    at every position of the text: ten times slower on a post."""
    first, *rest = (re.escape(part) for part in term.split())
    body = "".join(rf"\s+{part}" for part in rest)
    return re.compile(rf"{first}(?<!\w{first}){body}(?!\w)")


def word_tokens(text: str) -> list[str]:
    """The runs of `\\w` in `text`, in order, with a token that is not a word between two runs
    wherever what separates them is more than whitespace: two runs are next to each other in the
    list exactly when only whitespace separates them in the text ("acme air", not "acme. air").

    In C, at 60% of the cost of `re.findall`: a byte table makes ASCII whitespace a space and other
    ASCII non-word characters NUL, NUL is set apart by spaces, and `split()` cuts the rest (it also
    cuts at non-ASCII whitespace, as `\\s` does). Only a piece with non-ASCII characters in it
    ("café", "great✨") needs `_TOKEN` to cut it into runs and single non-word characters."""
    # "surrogatepass": a lone surrogate (from a JSON "\ud83d") is not valid UTF-8, but must not
    # stop the daemon; it comes back unchanged, as a non-word character.
    separated = text.encode("utf-8", "surrogatepass").translate(_SEPARATORS).decode("utf-8", "surrogatepass")
    if "\0" in separated:
        separated = separated.replace("\0", " \0 ")
    pieces = separated.split()
    if text.isascii():
        return pieces
    tokens: list[str] = []
    for piece in pieces:
        if piece.isascii():
            tokens.append(piece)
        else:
            tokens += _TOKEN.findall(piece)
    return tokens


_Pair = tuple[str, str]  # two words next to each other


@dataclass(frozen=True, slots=True)
class _Confirmed:
    """An entry confirmed by its own regex (see `_whole`), run only when the post could hold it: for
    an entry filed under a word, when all of `words` occur in the post."""

    key: str
    words: frozenset[str]
    regex: re.Pattern[str]


class TermFinder:
    """Which of many keywords and phrases occur in a text: the steps 1 and 2 of the module docstring."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._words: set[str] = set()
        # Phrases of two plain words, by their words: found by the pair alone.
        self._two_words: dict[_Pair, str] = {}
        longer: list[tuple[_Confirmed, list[_Pair]]] = []
        others: list[_Confirmed] = []
        self._always: list[_Confirmed] = []
        for key in sorted({term_key(term) for term in terms}):
            runs = _WORD.findall(key)
            if runs == [key]:
                self._words.add(key)
            elif runs == key.split(" ") and len(runs) == 2:
                self._two_words[runs[0], runs[1]] = key
            elif runs == key.split(" "):
                longer.append((_Confirmed(key, frozenset(runs), _whole(key)), list(pairwise(runs))))
            elif runs:
                others.append(_Confirmed(key, frozenset(runs), _whole(key)))
            else:
                self._always.append(_Confirmed(key, frozenset(), _whole(key)))
        # How many phrases a pair is in: the fewer, the rarer the pair is likely to be in posts, and
        # the fewer phrases a post with it makes us check ("acme air" is in the brand's few phrases,
        # "air outage" in those of every airline). The same for the words of the other entries.
        pair_uses = Counter(pair for _, pairs in longer for pair in set(pairs))
        pair_uses.update(self._two_words.keys())  # the pairs, not the dict's values as counts
        # A longer phrase is looked at when its rarest pair is in the post, and confirmed by its regex
        # only when all its pairs are: they are all in `_pairs`, so the post's pairs found say so.
        by_pair: dict[_Pair, list[tuple[frozenset[_Pair], _Confirmed]]] = defaultdict(list)
        for entry, pairs in longer:
            rarest = min(pairs, key=pair_uses.__getitem__)  # the first of equally rare ones
            by_pair[rarest].append((frozenset(pairs), entry))
        word_uses = Counter(word for entry in others for word in entry.words)
        word_uses.update(self._words)
        by_word: dict[str, list[_Confirmed]] = defaultdict(list)
        for entry in others:
            by_word[min(sorted(entry.words), key=word_uses.__getitem__)].append(entry)
        self._by_pair = {pair: tuple(entries) for pair, entries in by_pair.items()}
        self._pairs = frozenset(self._two_words).union(*(pairs for _, pairs in longer))
        self._by_word = {word: tuple(entries) for word, entries in by_word.items()}
        self._anchors = frozenset(self._by_word)
        #: The words `find` needs to know a text has: the keywords of one word, and the words of the
        #: entries filed under a word. (Phrases are found by their pairs, looked up from the tokens.)
        self.vocabulary = frozenset(self._words.union(*(entry.words for entry in others)))

    def find(self, folded: str, tokens: list[str], seen: set[str] | frozenset[str]) -> set[str]:
        """The keys (see `term_key`) of the entries in `folded`, a case-folded text cut into `tokens`
        by `word_tokens`; `seen` are the tokens that are in `vocabulary` (or more)."""
        found = self._words & seen  # a set, which `seen` need not be
        for entry in self._always:
            if entry.regex.search(folded):
                found.add(entry.key)
        for word in self._anchors.intersection(seen):
            for entry in self._by_word[word]:
                if entry.words <= seen and entry.regex.search(folded):
                    found.add(entry.key)
        pairs = self._pairs.intersection(pairwise(tokens))
        for pair in pairs:
            key = self._two_words.get(pair)
            if key is not None:
                found.add(key)  # two plain words next to each other: exactly the phrase
            for needs, entry in self._by_pair.get(pair, ()):
                # A longer phrase: all its pairs are in the post, but are they in one place, in order?
                if needs <= pairs and entry.regex.search(folded):
                    found.add(entry.key)
        return found


@dataclass(frozen=True, slots=True)
class CompiledRule:
    config: RuleConfig
    regexes: tuple[re.Pattern[str], ...]
    all_of: frozenset[str]  # term keys
    exclude: frozenset[str]  # term keys
    sources: frozenset[str]
    langs: frozenset[str]  # lower case with '-'
    name: str  # the config's, as a field: read for every rule every matched post matches

    def admits(self, post: Post) -> bool:
        """The source and language filters. A rule for `en` takes `en-GB` posts too."""
        if self.sources and post.source not in self.sources:
            return False
        if not self.langs:
            return True
        lang = (post.lang or "").lower().replace("_", "-")
        return lang in self.langs or lang.partition("-")[0] in self.langs

    def accepts(self, post: Post, found: set[str]) -> bool:
        """The filters and combinators: every all_of entry found, no exclude entry found."""
        return self.all_of <= found and self.exclude.isdisjoint(found) and self.admits(post)


def _compile(rule: RuleConfig, patterns: dict[str, re.Pattern[str]]) -> CompiledRule:
    return CompiledRule(
        config=rule,
        # Rules that share a regex share its Pattern, so a post is searched for it once.
        regexes=tuple(patterns.setdefault(p, re.compile(p, re.IGNORECASE)) for p in rule.regex),
        all_of=frozenset(term_key(t) for t in rule.all_of),
        exclude=frozenset(term_key(t) for t in rule.exclude),
        sources=frozenset(rule.sources),
        langs=frozenset(rule.langs),
        name=rule.name,
    )


def _any_of(patterns: dict[str, re.Pattern[str]]) -> re.Pattern[str] | None:
    """One alternation of every rule regex: it matches a text exactly when one of them does, and one
    scan costs a fraction of one scan per regex, so most posts skip the regexes altogether. None
    when the regexes cannot be joined (group references, global inline flags, clashing names)."""
    if not patterns or any(_GROUP_REFERENCE.search(p) for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    except re.error:
        return None


class RuleMatcher:
    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        patterns: dict[str, re.Pattern[str]] = {}
        self.rules = [_compile(rule, patterns) for rule in rules]
        # What makes a rule a candidate: a keyword (or, for a rule with only all_of, an all_of entry),
        # a cashtag or a symbol. Values are rule indices, so matches come out in config order.
        self._by_term: dict[str, list[int]] = defaultdict(list)
        self._by_cashtag: dict[str, list[int]] = defaultdict(list)
        # Symbols by their lower-case form: the post's folded words say which could be there, and a
        # case-sensitive regex confirms those few.
        self._by_symbol: dict[str, tuple[re.Pattern[str], list[int]]] = {}
        self._with_regex: list[int] = []
        self._match_all: list[int] = []
        terms: set[str] = set()
        for index, compiled in enumerate(self.rules):
            rule = compiled.config
            triggers = rule.keywords
            if not (rule.keywords or rule.cashtags or rule.symbols or rule.regex or rule.match_all):
                triggers = rule.all_of
            for key in {term_key(term) for term in triggers}:
                self._by_term[key].append(index)
            for tag in set(rule.cashtags):
                self._by_cashtag[tag].append(index)
            for symbol in set(rule.symbols):
                pattern = _whole(symbol)
                self._by_symbol.setdefault(symbol.casefold(), (pattern, []))[1].append(index)
            if compiled.regexes:
                self._with_regex.append(index)
            if rule.match_all:
                self._match_all.append(index)
            terms.update(rule.keywords, rule.all_of, rule.exclude)
        self._terms = TermFinder(terms)
        self._symbols = frozenset(self._by_symbol)
        self._vocabulary = self._terms.vocabulary | self._symbols
        self._regex_hint = _any_of(patterns)
        # The rules with an all_of, exclude, source or language filter: a candidate of the others is
        # a match as it stands.
        self._filtered = frozenset(
            index
            for index, rule in enumerate(self.rules)
            if rule.all_of or rule.exclude or rule.sources or rule.langs
        )

    def match(self, post: Post) -> list[CompiledRule]:
        text = post.text
        # The same on ASCII text, and `lower` has a fast path for it that `casefold` has not.
        folded = text.lower() if text.isascii() else text.casefold()
        # The post's words that some entry or symbol needs; all the later steps look only at these.
        tokens = word_tokens(folded)
        seen = self._vocabulary.intersection(tokens)
        found = self._terms.find(folded, tokens, seen)
        candidates = set(self._match_all)
        by_term = self._by_term
        for key in found:
            hits = by_term.get(key)  # an all_of or exclude entry may have no rule of its own
            if hits:
                candidates.update(hits)
        if self._by_cashtag and "$" in text:
            for tag in _CASHTAG.findall(text):
                hits = self._by_cashtag.get(tag.rstrip(".").upper())
                if hits:
                    candidates.update(hits)
        if self._symbols:
            for symbol_key in self._symbols.intersection(seen):
                pattern, hits = self._by_symbol[symbol_key]
                if pattern.search(text):
                    candidates.update(hits)
        if self._with_regex:
            self._match_regexes(post, found, candidates)
        rules = self.rules
        in_order = sorted(candidates) if len(candidates) > 1 else candidates
        if self._filtered.isdisjoint(candidates):
            return [rules[index] for index in in_order]
        filtered = self._filtered
        return [
            rules[index] for index in in_order if index not in filtered or rules[index].accepts(post, found)
        ]

    def _match_regexes(self, post: Post, found: set[str], candidates: set[int]) -> None:
        """Add the rules that only their regexes match. A regex costs a scan of the text, so: one
        scan with all of them joined says whether any can match; then a rule's own regexes run
        only when nothing else matched the rule and its filters, all_of and exclude pass; and a
        regex shared by several rules is searched once."""
        if self._regex_hint is not None and self._regex_hint.search(post.text) is None:
            return
        searched: dict[re.Pattern[str], bool] = {}
        for index in self._with_regex:
            if index in candidates:
                continue
            rule = self.rules[index]
            if index in self._filtered and not rule.accepts(post, found):
                continue
            for pattern in rule.regexes:
                hit = searched.get(pattern)
                if hit is None:
                    hit = searched[pattern] = pattern.search(post.text) is not None
                if hit:
                    candidates.add(index)
                    break
