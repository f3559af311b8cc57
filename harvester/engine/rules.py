"""Compiled rules: which rules does a post match?

All keywords of all rules go into one alternation, and cashtags are pulled out by one pattern, so each
post's text is scanned once however many rules there are. Regexes, exclusions and the per-rule
source/language filters then only run for rules that are candidates.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from harvester.config.schema import RuleConfig
from harvester.models import Post

_CASHTAG = re.compile(r"\$([A-Za-z][A-Za-z0-9.]{0,9})(?![A-Za-z0-9])")


def _keyword_pattern(keyword: str) -> str:
    # Word boundaries that also work for keywords starting or ending with a non-word character
    # (such as "c++" or "#acme"); runs of spaces inside a phrase match any whitespace.
    words = [re.escape(part) for part in keyword.strip().lower().split()]
    return r"\s+".join(words)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    config: RuleConfig
    regexes: tuple[re.Pattern[str], ...]
    exclude: re.Pattern[str] | None
    sources: frozenset[str]
    langs: frozenset[str]

    @property
    def name(self) -> str:
        return self.config.name

    def admits(self, post: Post) -> bool:
        if self.sources and post.source not in self.sources:
            return False
        return not (self.langs and (post.lang or "") not in self.langs)


class RuleMatcher:
    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        self.rules = [self._compile(rule) for rule in rules]
        self._by_keyword: dict[str, list[int]] = defaultdict(list)
        self._by_cashtag: dict[str, list[int]] = defaultdict(list)
        self._with_regex: list[int] = []
        self._match_all: list[int] = []
        for index, rule in enumerate(self.rules):
            for keyword in rule.config.keywords:
                self._by_keyword[" ".join(keyword.lower().split())].append(index)
            for tag in rule.config.cashtags:
                self._by_cashtag[tag].append(index)
            if rule.regexes:
                self._with_regex.append(index)
            if rule.config.match_all:
                self._match_all.append(index)
        keywords = sorted(self._by_keyword, key=len, reverse=True)
        self._keywords = (
            re.compile(
                r"(?<!\w)(" + "|".join(_keyword_pattern(k) for k in keywords) + r")(?!\w)", re.IGNORECASE
            )
            if keywords
            else None
        )

    @staticmethod
    def _compile(rule: RuleConfig) -> CompiledRule:
        exclude = None
        if rule.exclude:
            exclude = re.compile(
                r"(?<!\w)(?:" + "|".join(_keyword_pattern(k) for k in rule.exclude) + r")(?!\w)",
                re.IGNORECASE,
            )
        return CompiledRule(
            config=rule,
            regexes=tuple(re.compile(p, re.IGNORECASE) for p in rule.regex),
            exclude=exclude,
            sources=frozenset(rule.sources),
            langs=frozenset(rule.langs),
        )

    def match(self, post: Post) -> list[CompiledRule]:
        text = post.text
        candidates: set[int] = set(self._match_all)
        if self._keywords is not None:
            for found in self._keywords.findall(text):
                candidates.update(self._by_keyword[" ".join(found.lower().split())])
        if self._by_cashtag and "$" in text:
            for tag in _CASHTAG.findall(text):
                hits = self._by_cashtag.get(tag.upper())
                if hits:
                    candidates.update(hits)
        for index in self._with_regex:
            if index not in candidates and any(p.search(text) for p in self.rules[index].regexes):
                candidates.add(index)
        matched = []
        for index in sorted(candidates):
            rule = self.rules[index]
            if rule.admits(post) and not (rule.exclude is not None and rule.exclude.search(text)):
                matched.append(rule)
        return matched
