"""The signal engine: pure logic with the time passed in."""

from harvester.engine.engine import Engine, Verdict

__all__ = ["Engine", "Verdict"]
