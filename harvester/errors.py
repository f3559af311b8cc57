"""The small error hierarchy that library errors are mapped into at the boundary."""

from __future__ import annotations


class HarvesterError(Exception):
    """Base of every error harvester raises on purpose."""


class ConfigError(HarvesterError):
    """A user mistake in the configuration. `str()` is the one line printed to the user."""

    def __init__(self, path: str, message: str, location: str | None = None) -> None:
        self.path = path
        self.message = message
        self.location = location
        where = f" ({location})" if location else ""
        prefix = f"{path}: " if path else ""
        super().__init__(f"config error: {prefix}{message}{where}")


class MalformedPayload(HarvesterError):
    """A wire payload that cannot become a `Post`. Counted and skipped, never fatal."""


class SourceError(HarvesterError):
    """A source failed; subclasses say whether trying again can help."""


class TransientSourceError(SourceError):
    """Network trouble, 5xx, rate limits: the supervisor retries with backoff."""


class PermanentSourceError(SourceError):
    """Bad credentials, a missing privilege: retrying cannot help, the source is marked failed."""


class SinkError(HarvesterError):
    """A sink could not deliver; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class StoreError(HarvesterError):
    """The store could not complete an operation (locked, disk full, I/O error). Callers retry."""
