"""Time, injectable: the keeper reads wall-clock seconds through a ``Clock``."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Anything with ``now()`` returning epoch seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The real wall clock."""

    #: ``time.time`` itself, not a method wrapping it: every recorded event reads the
    #: clock, and a Python frame per read is a tenth of a speech call
    now = staticmethod(time.time)
