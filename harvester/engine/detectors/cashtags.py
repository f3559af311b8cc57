"""New cashtag trend: a `$TAG` never seen before (or barely) suddenly mentioned by many accounts.

This watches the whole stream, not a rule: the point is to surface tickers nobody has a rule for yet.
Every tag's lifetime mention count is kept in a bounded LRU (`max_tracked`), so a tag stops being
"new" once it has been mentioned `known_after` times. Recent mentions are kept only for tags that are
still new, in a time-bounded list per tag: a plain list, never longer than `known_after`, because most
tags are mentioned once or twice and a deque costs over 600 bytes even then. Nothing is called new
during `warmup`, which is spent learning which tags are usual (otherwise $BTC would be "new" a second
after every start).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from harvester.config.detectors import NewCashtagConfig
from harvester.engine.detectors.base import MIN_COOLDOWN_S, StreamDetector, at
from harvester.models import Post, Severity, Signal

KIND = "new_cashtag"
_CASHTAG = re.compile(r"\$([A-Za-z][A-Za-z0-9]{0,9})(?![A-Za-z0-9])")
_SNAPSHOT_TAGS = 20_000


class NewCashtagDetector(StreamDetector):
    kind = KIND

    def __init__(self, config: NewCashtagConfig) -> None:
        self.config = config
        self.mentions: OrderedDict[str, int] = OrderedDict()  # tag -> lifetime mentions, LRU order
        self.recent: dict[str, list[tuple[float, str, str]]] = {}  # tag -> (ts, author, uid), oldest first
        self.cooldown_until: dict[str, float] = {}
        self.started: float | None = None

    def observe(self, ts: float, post: Post, rules: tuple[str, ...]) -> list[Signal]:
        if self.started is None:
            self.started = ts
        if "$" not in post.text:
            return []
        signals = []
        for tag in {t.upper() for t in _CASHTAG.findall(post.text)}:
            signal = self._mention(ts, tag, post)
            if signal is not None:
                signals.append(signal)
        return signals

    def _mention(self, ts: float, tag: str, post: Post) -> Signal | None:
        before = self.mentions.pop(tag, 0)
        self.mentions[tag] = before + 1
        if len(self.mentions) > self.config.max_tracked:
            forgotten, _ = self.mentions.popitem(last=False)
            self.recent.pop(forgotten, None)
        if before >= self.config.known_after:
            self.recent.pop(tag, None)
            return None
        window = self.recent.get(tag)
        if window is None:
            window = self.recent[tag] = []
        window.append((ts, post.author, post.uid))
        horizon = ts - self.config.window
        if window[0][0] < horizon:
            expired = 1
            while expired < len(window) and window[expired][0] < horizon:
                expired += 1
            del window[:expired]
        return self._judge(ts, tag, window)

    def _judge(self, ts: float, tag: str, window: list[tuple[float, str, str]]) -> Signal | None:
        cfg = self.config
        assert self.started is not None
        if ts - self.started < cfg.warmup or ts < self.cooldown_until.get(tag, float("-inf")):
            return None
        if len(window) < cfg.min_mentions:
            return None
        authors = {author for _, author, _ in window}
        if len(authors) < cfg.min_authors:
            return None
        self.cooldown_until[tag] = ts + max(cfg.cooldown, MIN_COOLDOWN_S)
        first = window[0][0]
        rate = len(window) / max(ts - first, 1.0) * 60
        name = f"cashtag:${tag}"
        return Signal(
            id=Signal.make_id(name, KIND, at(first)),
            rule=name,
            kind=KIND,
            severity=Severity.MEDIUM if len(authors) >= 3 * cfg.min_authors else Severity.LOW,
            at=at(ts),
            window_start=at(first),
            window_end=at(ts),
            observed=float(len(window)),
            baseline=0.0,
            score=round(rate, 2),
            summary=(
                f"new cashtag ${tag}: {len(window)} mentions by {len(authors)} accounts "
                f"in {(ts - first) / 60:.0f} min, never common before"
            ),
            evidence={
                "cashtag": f"${tag}",
                "mentions": len(window),
                "distinct_authors": len(authors),
                "mentions_per_min": round(rate, 2),
                "example_uids": [uid for _, _, uid in window[-3:]],
            },
        )

    def advance(self, ts: float) -> list[Signal]:
        horizon = ts - self.config.window
        for tag in [t for t, w in self.recent.items() if not w or w[-1][0] < horizon]:
            del self.recent[tag]
        return []

    def snapshot(self) -> dict[str, Any]:
        common = sorted(self.mentions.items(), key=lambda item: item[1], reverse=True)[:_SNAPSHOT_TAGS]
        return {"mentions": dict(common), "started": self.started}

    def restore(self, state: dict[str, Any]) -> None:
        self.mentions = OrderedDict((str(k), int(v)) for k, v in state.get("mentions", {}).items())
        started = state.get("started")
        self.started = float(started) if started is not None else None
