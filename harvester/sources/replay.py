"""Replay a recorded JSONL or CSV file of posts as if they were arriving now.

For demos, for trying rules on yesterday's data, and for tests of everything downstream. The file
format is defined in `harvester.wire.replay`. A replay is a *bounded* source: it ends when the file
does, marks itself `finished`, and the rest of the daemon keeps running.

```yaml
sources:
  - type: replay
    path: data/launch-day.jsonl
    speed: 60        # one hour of recorded time per minute; "max" (the default) = as fast as possible
```

Pacing: with a numeric `speed`, the source sleeps (through the injected `ctx.sleep`) for the gap between
a record's `created_at` and the newest one before it, divided by the speed. Records out of order or with
equal timestamps do not pause, and no single pause exceeds `MAX_PAUSE_SECONDS` (60 s of wall time), so
a hole in the data does not stall a demo. With "max" it never sleeps, only yields to the event loop.

Posts keep their recorded `created_at`; `received_at` is the source clock's "now", so health figures
(last post age) describe the replay, not the recording. The backtest command, which runs in event time,
uses `harvester.wire.replay.read_posts` instead.

Resuming: the cursor is the position after the last post handed to the pipeline (a byte offset for
JSONL, a record number for CSV), committed with that post, so a restart continues with the next record.
Malformed records are counted and skipped; a cursor past trailing ones is committed with `ctx.advance`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, field_validator, model_validator

from harvester.clock import Sleep
from harvester.config.schema import SourceConfig
from harvester.errors import PermanentSourceError, TransientSourceError
from harvester.health import SourceState
from harvester.plugins import SOURCES
from harvester.sources.base import Source, SourceContext
from harvester.wire.replay import ReplayItem, detect_format, parse_item, read_records

log = structlog.get_logger(__name__)

# A hole of hours in the recorded data would stall a paced replay (a demo) for hours of wall time;
# no single pause is longer than this, whatever the gap and the speed.
MAX_PAUSE_SECONDS = 60.0
# With speed "max" nothing else awaits while the inbox has room: hand the loop to other tasks this often.
YIELD_EVERY = 256


class ReplayConfig(SourceConfig):
    """`path` must exist at start-up; `speed` is a factor of real time (10 = ten times faster) or "max"."""

    type: Literal["replay"] = "replay"
    path: Path
    format: Literal["auto", "jsonl", "csv"] = "auto"
    speed: float | Literal["max"] = "max"

    @field_validator("path", mode="after")
    @classmethod
    def _file_exists(cls, path: Path) -> Path:
        path = path.expanduser()
        if not path.exists():
            raise ValueError(f"file not found: {path}")
        if not path.is_file():
            raise ValueError(f"not a file: {path}")
        return path

    @field_validator("speed", mode="before")
    @classmethod
    def _positive_factor_or_max(cls, value: object) -> float | str:
        if value == "max":
            return "max"
        # A bool is an int to Python, but YAML `speed: yes` is a mistake, not the factor 1.
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        ):
            return float(value)
        raise ValueError(
            f"speed must be a positive number (1 = real time, 10 = ten times faster) or 'max', got {value!r}"
        )

    @model_validator(mode="after")
    def _format_is_known(self) -> ReplayConfig:
        detect_format(self.path, self.format)  # "auto" with an unknown extension: say so at start-up
        return self


class _Pacer:
    """Sleeps for the recorded gap between posts divided by the speed factor.

    Gaps are measured from the newest `created_at` seen so far, so a record that is out of order (or has
    the same timestamp) does not pause, and the one after it pauses only for the time past the newest.
    """

    def __init__(self, speed: float, sleep: Sleep) -> None:
        self._speed = speed
        self._sleep = sleep
        self._newest: datetime | None = None

    async def wait_for(self, created_at: datetime) -> None:
        newest = self._newest
        if newest is None or created_at > newest:
            self._newest = created_at
        if newest is not None and created_at > newest:
            gap = (created_at - newest).total_seconds()
            await self._sleep(min(gap / self._speed, MAX_PAUSE_SECONDS))


class ReplaySource(Source):
    config_class = ReplayConfig
    bounded = True

    def __init__(self, config: BaseModel) -> None:
        # The registry hands over the validated config as a BaseModel; narrow it once, here.
        if not isinstance(config, ReplayConfig):
            raise TypeError(f"ReplaySource needs a ReplayConfig, got {type(config).__name__}")
        super().__init__(config)
        self.settings = config
        self.format = detect_format(config.path, config.format)

    @property
    def event_time(self) -> bool:
        return True

    async def run(self, ctx: SourceContext) -> None:
        resumed_from = ctx.cursor
        pacer = None if self.settings.speed == "max" else _Pacer(float(self.settings.speed), ctx.sleep)
        ctx.set_state(SourceState.CONNECTED)
        try:
            items = read_records(self.settings.path, fmt=self.format, start_after=resumed_from)
        except ValueError as exc:  # a cursor that is not ours: retrying cannot help
            raise PermanentSourceError(f"cannot replay {self.settings.path}: {exc}") from exc
        with closing(items):
            posts, malformed = await self._replay(items, ctx, pacer)
        ctx.set_state(SourceState.FINISHED)
        log.info(
            "replay finished",
            source=self.name,
            path=str(self.settings.path),
            posts=posts,
            malformed=malformed,
            resumed_from=resumed_from,
            cursor=ctx.cursor,
        )

    async def _replay(
        self, items: Iterator[ReplayItem], ctx: SourceContext, pacer: _Pacer | None
    ) -> tuple[int, int]:
        """Emit every post; return (posts emitted, records skipped as malformed)."""
        posts = malformed = 0
        # The cursor after trailing malformed records must still be committed, or a restart would read
        # them (and count them) again; it rides on the next post or, at the end, on an advance.
        uncommitted: str | None = None
        for item in self._checked(items):
            post, error = parse_item(item, default_source=self.name, received_at=ctx.clock.now())
            if post is None:
                malformed += 1
                ctx.malformed(f"{self.settings.path.name} {error}")
                uncommitted = item.cursor
            else:
                if pacer is not None:
                    await pacer.wait_for(post.created_at)
                await ctx.emit(post, item.cursor)
                posts += 1
                uncommitted = None
            if (posts + malformed) % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        if uncommitted is not None:
            await ctx.advance(uncommitted)
        return posts, malformed

    def _checked(self, items: Iterator[ReplayItem]) -> Iterator[ReplayItem]:
        """`items`, with the file-level problems found on the first read mapped to a permanent error."""
        try:
            yield from items
        except ValueError as exc:  # a cursor that no longer fits the file, a CSV header without `id`...
            raise PermanentSourceError(f"cannot replay {self.settings.path}: {exc}") from exc
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:  # changed after start-up
            raise PermanentSourceError(f"cannot read {self.settings.path}: {exc}") from exc
        except OSError as exc:  # an I/O error may pass (a network file system): let the supervisor retry
            raise TransientSourceError(f"cannot read {self.settings.path}: {exc}") from exc


SOURCES.register("replay", ReplayConfig, ReplaySource)
