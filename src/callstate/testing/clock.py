"""A clock tests move by hand, so nothing ever sleeps for time to pass."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """Wall-clock seconds that only move when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds``; returns the new time."""
        if seconds < 0:
            msg = f"a clock only moves forward; got advance({seconds!r})"
            raise ValueError(msg)
        self._now += seconds
        return self._now

    def set(self, now: float) -> None:
        """Jump to ``now`` (must not go back)."""
        if now < self._now:
            msg = f"a clock only moves forward; {now!r} is before {self._now!r}"
            raise ValueError(msg)
        self._now = float(now)
