"""``ArchiveFigures``: the optional store ability behind ``keeper.fleet_stats``.

A store with it answers, for a window of ``closed_at`` times, how many archived legs
fell in each health class and the raw samples the fleet figures are computed from,
from a rollup rather than by reading records: every shipped store but the memory one
rolls legs up per hour and day (``storage.rollup``). Every shipped store has it.
Records archived before this ability (no ``closed_at``) are not counted.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from .histogram import LogHistogram

__all__ = ["ArchiveFigures", "Figures", "UNKNOWN_HEALTH"]

#: the class a leg archived before health classes is counted under
UNKNOWN_HEALTH = "unknown"


class Figures(msgspec.Struct, kw_only=True):
    """What a store counts for one window (raw; ``callstate.archive.fleet`` derives rates
    and percentiles).

    Args:
        legs: archived legs per health class (``unknown`` for ones without a class).
        with_tools: legs that made at least one tool call.
        with_in_doubt: legs with a tool call a crash left in doubt.
        recover_s: for each recovered leg, the seconds the caller was cut off.
        recover: the same seconds as a ``LogHistogram`` instead, from a store that rolls
            them up (percentiles within its stated error); None: use ``recover_s``.
        followup_lag_s: for each follow-up that succeeded, due in the window, the seconds
            from when it was due to when it finished.
        followup_lag: the same seconds as a ``LogHistogram``, from a store that rolls them
            up; None: use ``followup_lag_s``.
    """

    legs: dict[str, int] = {}
    with_tools: int = 0
    with_in_doubt: int = 0
    recover_s: list[float] = []
    recover: LogHistogram | None = None
    followup_lag_s: list[float] = []
    followup_lag: LogHistogram | None = None


@runtime_checkable
class ArchiveFigures(Protocol):
    """A store that counts its archive by health class and time (optional)."""

    async def archive_figures(self, since: float, until: float) -> Figures:
        """The figures of legs closed in ``[since, until)`` and of follow-ups due then."""
