"""Score a replay's signals against labelled events: how early was each event caught, and how much noise.

Two figures decide whether users keep a monitoring tool switched on: the delay from an event's onset
to the first alert about it, and the alerts that are about nothing. For each event, the first signal
of its rule between `onset - early` and `end` detects it; the delay is negative when that signal came
before the labelled onset (labels are approximate, and an alarm a little ahead of the label is early
detection, not noise). Every signal outside all of those windows, whatever its rule, is a false alarm;
their rate is per day of replayed event time.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from harvester.models import Signal
from harvester.onsets import LabelledEvent

DEFAULT_EARLY = 900.0  # 15 minutes


@dataclass(frozen=True, slots=True)
class EventOutcome:
    event: LabelledEvent
    first_signal: Signal | None

    @property
    def delay_s(self) -> float | None:
        if self.first_signal is None:
            return None
        return (self.first_signal.at - self.event.onset).total_seconds()

    def as_json(self) -> dict[str, Any]:
        signal = self.first_signal
        return {
            "name": self.event.name,
            "onset": self.event.onset.isoformat(),
            "end": self.event.end.isoformat(),
            "rule": self.event.rule,
            "first_signal": None if signal is None else signal.at.isoformat(),
            "delay_s": self.delay_s,
            "signal_rule": None if signal is None else signal.rule,
            "signal_kind": None if signal is None else signal.kind,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    outcomes: tuple[EventOutcome, ...]
    false_alarms: tuple[Signal, ...]
    replayed_seconds: float

    @property
    def replayed_days(self) -> float:
        return self.replayed_seconds / 86400.0

    @property
    def false_alarms_per_day(self) -> float | None:
        """None when the replay spans no time but still raised false alarms (a rate would be infinite)."""
        if not self.false_alarms:
            return 0.0
        return len(self.false_alarms) / self.replayed_days if self.replayed_days > 0 else None

    @property
    def detected(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.first_signal is not None)

    @property
    def median_delay_s(self) -> float | None:
        delays = [o.delay_s for o in self.outcomes if o.delay_s is not None]
        return statistics.median(delays) if delays else None

    def false_alarms_by_rule(self) -> dict[str, int]:
        return dict(Counter(signal.rule for signal in self.false_alarms).most_common())

    def as_json(self) -> dict[str, Any]:
        per_day = self.false_alarms_per_day
        return {
            "events": [outcome.as_json() for outcome in self.outcomes],
            "false_alarms": len(self.false_alarms),
            "false_alarms_per_day": None if per_day is None else round(per_day, 3),
            "replayed_days": round(self.replayed_days, 6),
            "detected": self.detected,
            "missed": len(self.outcomes) - self.detected,
            "median_delay_s": self.median_delay_s,
            "false_alarms_by_rule": self.false_alarms_by_rule(),
        }


def evaluate(
    signals: Iterable[Signal],
    events: Sequence[LabelledEvent],
    *,
    replayed_seconds: float,
    early: float = DEFAULT_EARLY,
) -> Evaluation:
    """Match `signals` to `events` (see the module docstring for the rules)."""
    ordered = sorted(signals, key=lambda s: s.at)
    margin = timedelta(seconds=early)

    def inside(signal: Signal, event: LabelledEvent) -> bool:
        return event.onset - margin <= signal.at <= event.end

    outcomes = tuple(
        EventOutcome(
            event,
            next(
                (s for s in ordered if inside(s, event) and (event.rule is None or s.rule == event.rule)),
                None,
            ),
        )
        for event in events
    )
    false_alarms = tuple(s for s in ordered if not any(inside(s, event) for event in events))
    return Evaluation(outcomes, false_alarms, replayed_seconds)


# --------------------------------------------------------------------------------------------------
# Text report


def format_delay(seconds: float | None) -> str:
    """`+42s`, `-3m10s`, `+1h05m`, or `missed`: short enough for a table column."""
    if seconds is None:
        return "missed"
    sign = "-" if seconds < 0 else "+"
    total = round(abs(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _rate(evaluation: Evaluation) -> str:
    per_day = evaluation.false_alarms_per_day
    shown = "n/a" if per_day is None else f"{per_day:.1f}"
    return f"{len(evaluation.false_alarms)} ({shown}/day)"


def _by_rule(evaluation: Evaluation) -> str:
    return ", ".join(f"{rule} {n}" for rule, n in evaluation.false_alarms_by_rule().items()) or "none"


def format_report(evaluation: Evaluation) -> str:
    """An aligned table of events (onset, expected rule, first signal, delay) and the totals."""
    rows = [["event", "onset", "rule", "first signal", "delay"]]
    for outcome in evaluation.outcomes:
        signal = outcome.first_signal
        rows.append(
            [
                outcome.event.name,
                _time(outcome.event.onset),
                outcome.event.rule or "(any)",
                "-" if signal is None else f"{_time(signal.at)} {signal.rule}/{signal.kind}",
                format_delay(outcome.delay_s),
            ]
        )
    total = len(evaluation.outcomes)
    lines = _aligned(rows)
    lines += [
        "",
        f"detected       {evaluation.detected} of {total}, median delay "
        f"{format_delay(evaluation.median_delay_s) if evaluation.median_delay_s is not None else 'n/a'}",
        f"false alarms   {_rate(evaluation)} over {evaluation.replayed_days:.2f} days of event time",
        f"by rule        {_by_rule(evaluation)}",
    ]
    return "\n".join(lines)


def format_comparison(ours: Evaluation, baseline: Evaluation, baseline_label: str) -> str:
    """harvester and the baseline side by side: per-event delays, then detection and false alarms."""
    rows = [["event", "onset", "rule", "harvester", baseline_label]]
    for mine, theirs in zip(ours.outcomes, baseline.outcomes, strict=True):
        rows.append(
            [
                mine.event.name,
                _time(mine.event.onset),
                mine.event.rule or "(any)",
                format_delay(mine.delay_s),
                format_delay(theirs.delay_s),
            ]
        )
    rows.append(["", "", "", "", ""])
    total = len(ours.outcomes)
    for label, value in (
        ("detected", lambda e: f"{e.detected} of {total}"),
        ("median delay", lambda e: "n/a" if e.median_delay_s is None else format_delay(e.median_delay_s)),
        ("false alarms", _rate),
    ):
        rows.append([label, "", "", value(ours), value(baseline)])
    lines = _aligned(rows)
    lines.append(f"replayed {ours.replayed_days:.2f} days of event time")
    return "\n".join(lines)
