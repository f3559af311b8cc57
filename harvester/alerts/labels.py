"""A signal's labels and the glob matchers that routes, inhibition rules and silences use on them."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from harvester.models import Signal


def signal_labels(signal: Signal, extra: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
    """`rule`, `kind` and `severity`, plus the labels the config attaches to the signal's rule.

    The built-in three win over configured ones of the same name: a route on `severity` must not be
    fooled by a rule that happens to carry a `severity` label.
    """
    labels = dict((extra or {}).get(signal.rule, {}))
    labels.update(rule=signal.rule, kind=signal.kind, severity=signal.severity.value)
    return labels


def matches(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """True if every matcher's glob matches the whole value of its label (case-sensitive).

    A label the signal lacks never matches, so `{team: "*"}` means "has a team label".
    """
    for name, pattern in matchers.items():
        value = labels.get(name)
        if value is None or not fnmatchcase(value, pattern):
            return False
    return True
