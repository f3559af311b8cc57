"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest

from harvester.clock import ManualClock
from tests.helpers import T0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)
