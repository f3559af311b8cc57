"""The rule schema: what a user watches for, and how a post matches."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from harvester.config.base import NAME_PATTERN, Strict
from harvester.config.detectors import VolumeSpikeConfig


class RuleConfig(Strict):
    """One thing the user cares about. A post matches when any pattern matches and no exclusion does."""

    name: str = Field(pattern=NAME_PATTERN)
    keywords: list[str] = []
    cashtags: list[str] = []
    regex: list[str] = []
    exclude: list[str] = []
    sources: list[str] = []
    langs: list[str] = []
    match_all: bool = False
    volume_spike: VolumeSpikeConfig | None = None

    @field_validator("keywords", "exclude")
    @classmethod
    def _non_empty_words(cls, values: list[str]) -> list[str]:
        for word in values:
            if not word.strip():
                raise ValueError("keywords cannot be empty strings")
        return values

    @field_validator("cashtags")
    @classmethod
    def _cashtag_form(cls, values: list[str]) -> list[str]:
        out = []
        for tag in values:
            bare = tag.removeprefix("$")
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9.]{0,9}", bare):
                raise ValueError(f"expected a cashtag such as $BTC, got {tag!r}")
            out.append(bare.upper())
        return out

    @field_validator("regex")
    @classmethod
    def _compiles(cls, values: list[str]) -> list[str]:
        for pattern in values:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return values

    @model_validator(mode="after")
    def _has_something_to_match(self) -> RuleConfig:
        if not (self.keywords or self.cashtags or self.regex or self.match_all):
            raise ValueError("a rule needs keywords, cashtags or regex (or match_all: true)")
        return self
