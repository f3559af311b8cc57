"""Fixtures shared by the tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from harvester.clock import ManualClock
from tests.helpers import T0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Logging is process-global: a test that configures it (the bench does) must not leak its level
    into the next test's captured logs."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()
    logging.getLogger().setLevel(logging.WARNING)
