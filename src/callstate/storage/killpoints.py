"""Named crash points between the durable steps of a multi-step write.

A write made of several store calls (a handoff's offer and package, an accept's
package move, claim and event, a closed call's archive record and follow-ups) names the
moment after each step with :func:`kill_point`. A process started with
``CALLSTATE_KILL_AT=name[,name...]`` in its environment SIGKILLs itself when it reaches
one of them, so a crash test can stop a real process at an exact step and check that
the next owner, the sweep or a repeated call repairs what it left.

The environment is read once, at import; without the variable a kill point is one
lookup in an empty set. None sits on a per-event path.
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = ["KILL_AT_ENV", "kill_point"]

#: The environment variable naming the kill points a process stops at.
KILL_AT_ENV: Final = "CALLSTATE_KILL_AT"

_ARMED: Final = frozenset(p for p in os.environ.get(KILL_AT_ENV, "").split(",") if p)


def kill_point(name: str) -> None:
    """SIGKILL this process here if ``CALLSTATE_KILL_AT`` names ``name``."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
