"""structlog set-up: JSON lines for journald, readable lines on a terminal, and secrets redacted.

Every configured secret value is replaced by "***" in every event, including exception text and the
records of the libraries we use (aiohttp, discord.py, tweepy log through the stdlib).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog

REDACTED = "***"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


# A path segment or query this long in a secret URL is taken for a token (ids and words are shorter).
_TOKEN_LIKE = 16


def secret_parts_of_url(value: str) -> set[str]:
    """The parts of a secret URL that may be quoted on their own: its path, its query, and every
    token-like segment of the path. Nothing for a value that is not an http(s) URL."""
    split = urlsplit(value)
    if split.scheme not in ("http", "https") or not split.netloc:
        return set()
    parts = {split.path, split.query} if len(split.path) > 1 else {split.query}
    parts |= {segment for segment in split.path.split("/") if len(segment) >= _TOKEN_LIKE}
    return {part for part in parts if len(part) >= _TOKEN_LIKE}


class SecretRedactor:
    """A structlog processor replacing each secret's occurrences in any string value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if s}
        # A secret URL (a Slack or Discord webhook) is a secret in each of its parts: an error page
        # may quote only its path, and the token is in there.
        values |= {part for s in values for part in secret_parts_of_url(s)}
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted(values, key=len, reverse=True)

    def redact(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact(v) for v in value)
        if isinstance(value, BaseException):
            return self.redact(repr(value))
        return value

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event
        for key, value in list(event.items()):
            event[key] = self.redact(value)
        return event


def configure_logging(
    level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    stream = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        SecretRedactor(secrets),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
