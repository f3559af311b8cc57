"""Compiled rules: which rules does a post match?

The text is read once for all rules together, so the cost per post depends on the post, not on how
many rules or keywords there are. (One `re` alternation of every keyword, the obvious design, tries
every alternative at every position: its cost grows with the number of keywords.)

1. The post's words (runs of `\\w`) are found once and case-folded into a set. The single-word
   entries of every rule (keywords, all_of and exclude alike) live in one set, and one set
   intersection, done in C, finds those that occur: 10,000 keywords cost what ten do.
2. A phrase ("acme air") or an entry with characters other than letters and digits ("c++",
   "#acme", "at&t") is confirmed by its own small regex, run only when every word of the entry
   occurs in the post; an entry with no word at all (an emoji) is always checked. So phrases need
   whitespace between their words ("acme. air" is not "acme air") without a scan per phrase.
3. Cashtags are pulled out by one pattern when the text holds a "$"; bare symbols are looked up,
   case-sensitively, among the post's words as written.
4. The rules those hit, plus the match_all rules, are the candidates. A candidate is kept when its
   source and language filters pass, every all_of entry was found and no exclude entry was. A
   rule's own regexes run only for that rule, and only when nothing else matched it and its
   filters, all_of and exclude already pass.

Keywords match whole words, so a keyword also matches inside a hashtag or mention made of just that
word: `acme` matches "#acme" and "@acme", not "#acmeair" (list `acmeair` for that); the keyword
`#acme` matches only the hashtag.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harvester.config.schema import RuleConfig
from harvester.models import Post

_WORD = re.compile(r"\w+")
# Group references change meaning when patterns are joined into one alternation.
_GROUP_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")
# A trailing "." is the end of the sentence ("buying $BTC."), not part of the symbol ($BRK.B).
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9.]{0,9})(?![A-Za-z0-9])")


def term_key(term: str) -> str:
    """How an entry is compared: case-folded, with each run of whitespace made one space."""
    return " ".join(term.casefold().split())


@dataclass(frozen=True, slots=True)
class _Confirmed:
    """An entry found by its own regex, worth running only when all of `words` occur in the post."""

    key: str
    words: frozenset[str]
    regex: re.Pattern[str]


class TermFinder:
    """Which of many keywords and phrases occur in a text: the steps 1 and 2 of the module docstring."""

    def __init__(self, terms: Iterable[str]) -> None:
        self._words: set[str] = set()
        self._by_anchor: dict[str, list[_Confirmed]] = defaultdict(list)
        self._always: list[_Confirmed] = []
        for key in {term_key(term) for term in terms}:
            words = _WORD.findall(key)
            if words == [key]:
                self._words.add(key)
                continue
            body = r"\s+".join(re.escape(part) for part in key.split(" "))
            confirmed = _Confirmed(key, frozenset(words), re.compile(rf"(?<!\w){body}(?!\w)"))
            if words:
                # The longest word is the rarest in practice: it gates the regex best.
                self._by_anchor[max(words, key=len)].append(confirmed)
            else:
                self._always.append(confirmed)
        self._anchors = set(self._by_anchor)

    def find(self, folded: str, words: set[str]) -> set[str]:
        """The keys (see `term_key`) of the entries in `folded`, a case-folded text whose words
        (runs of `\\w`) are `words`."""
        found = words & self._words
        anchors = words & self._anchors
        if not (anchors or self._always):
            return found
        for anchor in anchors:
            for entry in self._by_anchor[anchor]:
                if entry.words <= words and entry.regex.search(folded):
                    found.add(entry.key)
        for entry in self._always:
            if entry.regex.search(folded):
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

    @property
    def name(self) -> str:
        return self.config.name

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
                pattern = re.compile(rf"(?<!\w){re.escape(symbol)}(?!\w)")
                self._by_symbol.setdefault(symbol.casefold(), (pattern, []))[1].append(index)
            if compiled.regexes:
                self._with_regex.append(index)
            if rule.match_all:
                self._match_all.append(index)
            terms.update(rule.keywords, rule.all_of, rule.exclude)
        self._terms = TermFinder(terms)
        self._symbols = frozenset(self._by_symbol)
        self._regex_hint = _any_of(patterns)

    def match(self, post: Post) -> list[CompiledRule]:
        text = post.text
        folded = text.casefold()
        words = set(_WORD.findall(folded))
        found = self._terms.find(folded, words)
        candidates: set[int] = set(self._match_all)
        for key in found:
            hits = self._by_term.get(key)
            if hits:
                candidates.update(hits)
        if self._by_cashtag and "$" in text:
            for tag in _CASHTAG.findall(text):
                hits = self._by_cashtag.get(tag.rstrip(".").upper())
                if hits:
                    candidates.update(hits)
        for symbol_key in self._symbols & words:
            pattern, hits = self._by_symbol[symbol_key]
            if pattern.search(text):
                candidates.update(hits)
        rules = self.rules
        if self._with_regex:
            self._match_regexes(post, found, candidates)
        return [rule for index in sorted(candidates) if (rule := rules[index]).accepts(post, found)]

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
            if not rule.accepts(post, found):
                continue
            for pattern in rule.regexes:
                hit = searched.get(pattern)
                if hit is None:
                    hit = searched[pattern] = pattern.search(post.text) is not None
                if hit:
                    candidates.add(index)
                    break
