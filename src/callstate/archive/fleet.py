"""Fleet figures: recovery quality across every worker, read from the store.

``keeper.fleet_stats(since=...)`` asks the store's ``ArchiveFigures`` ability for the
window's counts (an index or rollup, never the records themselves) and derives the
figures here, purely: the recovered-call rate, legs per health class, time-to-recover
and follow-up lag percentiles, and the in-doubt rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from ..errors import ConfigError
from ..storage import Store
from ..storage.abilities import counts_figures
from ..storage.figures import Figures
from ..storage.histogram import LogHistogram

__all__ = [
    "FleetStats",
    "Percentiles",
    "fleet_stats",
    "from_figures",
    "histogram_percentiles",
    "percentiles",
]


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """A distribution of seconds: how many samples, the median, p90, p99 and the worst."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float


class FleetStats(msgspec.Struct, frozen=True, kw_only=True):
    """Recovery quality of every leg archived (closed) in ``[since, until)``.

    ``calls`` counts call ends (every leg but the superseded ones, which a later leg
    continued); ``recovered_rate`` is the share of them whose health is ``recovered``;
    ``in_doubt_rate`` the share of legs with tool calls that had one left in doubt by a
    crash; ``time_to_recover`` the seconds recovered callers were cut off;
    ``followup_lag`` the seconds from a follow-up being due to it succeeding (None when
    there were none).
    """

    since: float
    until: float
    legs: int
    calls: int
    health: dict[str, int]
    recovered_rate: float
    in_doubt_rate: float
    time_to_recover: Percentiles | None
    followup_lag: Percentiles | None


def percentiles(samples: Sequence[float]) -> Percentiles | None:
    """The nearest-rank percentiles of ``samples`` (None when there are none)."""
    if not samples:
        return None
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return Percentiles(
        count=len(ordered), p50=rank(0.5), p90=rank(0.9), p99=rank(0.99), max=ordered[-1]
    )


def histogram_percentiles(hist: LogHistogram) -> Percentiles | None:
    """The nearest-rank percentiles a ``LogHistogram`` gives (within its stated error)."""
    if not hist.count:
        return None
    return Percentiles(
        count=hist.count,
        p50=hist.quantile(0.5),
        p90=hist.quantile(0.9),
        p99=hist.quantile(0.99),
        max=hist.max,
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def from_figures(figures: Figures, *, since: float, until: float) -> FleetStats:
    """The fleet figures of one window from what the store counted. Pure."""
    legs = sum(figures.legs.values())
    calls = legs - figures.legs.get("superseded", 0)
    return FleetStats(
        since=since,
        until=until,
        legs=legs,
        calls=calls,
        health=dict(sorted(figures.legs.items())),
        recovered_rate=_share(figures.legs.get("recovered", 0), calls),
        in_doubt_rate=_share(figures.with_in_doubt, figures.with_tools),
        time_to_recover=percentiles(figures.recover_s)
        if figures.recover is None
        else histogram_percentiles(figures.recover),
        followup_lag=percentiles(figures.followup_lag_s)
        if figures.followup_lag is None
        else histogram_percentiles(figures.followup_lag),
    )


async def fleet_stats(store: Store, *, since: float | None, until: float) -> FleetStats:
    """The fleet figures of legs closed in ``[since, until)`` (``since`` None: all time).

    Raises:
        ConfigError: ``since`` is not before ``until``, or the store cannot count its
            archive (it lacks ``ArchiveFigures``).
    """
    start = 0.0 if since is None else since
    if not start < until:
        msg = f"since must be before until ({until!r}), got {since!r}"
        raise ConfigError(msg)
    if not counts_figures(store):
        msg = f"the store {store.url!r} cannot count its archive (no ArchiveFigures)"
        raise ConfigError(msg)
    figures = await store.archive_figures(start, until)
    return from_figures(figures, since=start, until=until)
