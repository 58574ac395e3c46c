"""The fleet-figure rollup every store engine shares: buckets, the read plan, the tally.

A store rolls each archived leg up into the hour and the day of its ``closed_at``, and
each succeeded follow-up's lag into the hour and the day it was due, in the same
transaction (or script) as the write itself. ``plan`` splits a window into what is
read raw (its two partial edge hours), what is read per hour (the whole hours at its
ends) and what is read per day (its whole days), so a window costs at most its days
plus 2 x 23 hours plus two hours of rows. ``window_sql`` is that read for the SQL
engines (one statement, one snapshot); ``Tally`` adds up what any engine read and
gives the ``Figures``. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .figures import UNKNOWN_HEALTH, Figures
from .histogram import GAMMA, MIN_SECONDS, LogHistogram, bucket_of

__all__ = [
    "DAY_HOURS",
    "LOG_GAMMA",
    "ROLLUP_S",
    "ZERO_BIN",
    "Plan",
    "Tally",
    "bin_of",
    "hour_of",
    "plan",
    "window_sql",
]

#: the rollup's time bucket, in seconds
ROLLUP_S = 3600
#: hours per day-level bucket
DAY_HOURS = 24
#: the bin of samples counted as zero (below ``MIN_SECONDS``)
ZERO_BIN = -(2**31)
#: ``log(GAMMA)``, for engines that compute a bin themselves (Lua, SQL)
LOG_GAMMA = math.log(GAMMA)

#: kinds of the rows ``window_sql`` returns
LEGS, RECOVER, LAG = 0, 1, 2


def hour_of(at: float) -> int:
    """The rollup hour of a time (the exact floor of ``at / ROLLUP_S``)."""
    return int(at // ROLLUP_S)


def bin_of(seconds: float) -> int:
    """The rollup bin a sample of seconds is counted in (``ZERO_BIN`` below 1 ms)."""
    b = bucket_of(seconds)
    return ZERO_BIN if b is None else b


class Plan(NamedTuple):
    """What one window reads: ``raw`` time spans, ``hours`` and ``days`` index spans,
    each ``[lo, hi)`` and non-empty."""

    raw: list[tuple[float, float]]
    hours: list[tuple[int, int]]
    days: list[tuple[int, int]]


def plan(since: float, until: float) -> Plan:
    """How to read ``[since, until)``: whole days and hours rolled up, the edges raw."""
    lo, hi = math.ceil(since / ROLLUP_S), math.floor(until / ROLLUP_S)
    lo += lo * ROLLUP_S < since  # the division rounded: keep whole hours inside the window
    hi -= hi * ROLLUP_S > until
    if lo >= hi:
        return Plan([(since, until)] if since < until else [], [], [])
    raw = [(a, b) for a, b in ((since, lo * ROLLUP_S), (hi * ROLLUP_S, until)) if a < b]
    dlo, dhi = -(-lo // DAY_HOURS), hi // DAY_HOURS
    if dlo >= dhi:
        return Plan(raw, [(lo, hi)], [])
    hours = [(a, b) for a, b in ((lo, dlo * DAY_HOURS), (dhi * DAY_HOURS, hi)) if a < b]
    return Plan(raw, hours, [(dlo, dhi)])


def _spans(col: str, spans: Sequence[tuple[float, float]], mark: str) -> tuple[str, list[float]]:
    conds = " OR ".join(f"({col} >= {mark} AND {col} < {mark})" for _ in spans)
    return f"({conds})", [v for span in spans for v in span]


def window_sql(p: Plan, schema: str, mark: str) -> tuple[str, list[float]]:
    """The one statement that reads plan ``p`` on a SQL engine, and its parameters.

    Args:
        p: the plan of the window.
        schema: the tables' qualifier with its dot (``""`` for SQLite).
        mark: the driver's parameter mark (``?`` or ``%s``).

    Returns:
        Rows of ``(kind, health, bin, n, tools, in_doubt, seconds)``; ``Tally.take``
        adds them up.
    """
    parts: list[str] = []
    args: list[float] = []
    legs = "CAST(sum({c}) AS BIGINT)"
    null_int, zero = "CAST(NULL AS INTEGER)", "CAST(0 AS BIGINT)"
    if p.raw:
        w, a = _spans("closed_at", p.raw, mark)
        parts.append(
            f"SELECT {LEGS}, health, {null_int}, count(*), "
            "CAST(sum(CASE WHEN tools > 0 THEN 1 ELSE 0 END) AS BIGINT), "
            "CAST(sum(CASE WHEN in_doubt > 0 THEN 1 ELSE 0 END) AS BIGINT), "
            f"CAST(NULL AS DOUBLE PRECISION) FROM {schema}archive WHERE {w} GROUP BY health"
        )
        parts.append(
            f"SELECT {RECOVER}, NULL, {null_int}, 1, {zero}, {zero}, recover_s "
            f"FROM {schema}archive WHERE {w} AND recover_s IS NOT NULL"
        )
        w, _ = _spans("due_at", p.raw, mark)
        parts.append(
            f"SELECT {LAG}, NULL, {null_int}, 1, {zero}, {zero}, updated_at - due_at "
            f"FROM {schema}followups WHERE status = 'done' AND mark = 'succeeded' AND {w}"
        )
        args += a + a + a
    for level, key, spans in (("", "hour", p.hours), ("_day", "day", p.days)):
        if not spans:
            continue
        w, a = _spans(key, spans, mark)
        parts.append(
            f"SELECT {LEGS}, health, {null_int}, {legs.format(c='legs')}, "
            f"{legs.format(c='tools')}, {legs.format(c='in_doubt')}, "
            f"CAST(NULL AS DOUBLE PRECISION) FROM {schema}archive_rollup{level} "
            f"WHERE {w} GROUP BY health"
        )
        for kind, table in ((RECOVER, "archive_recover_rollup"), (LAG, "followup_lag_rollup")):
            parts.append(
                f"SELECT {kind}, NULL, bin, {legs.format(c='n')}, {zero}, {zero}, max(worst) "
                f"FROM {schema}{table}{level} WHERE {w} GROUP BY bin"
            )
        args += a * 3
    return " UNION ALL ".join(parts) or "SELECT 0, NULL, 0, 0, 0, 0, 0.0 WHERE 1 = 0", args


class _Hist:
    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.worst = 0.0

    def add(self, b: int, n: int, worst: float) -> None:
        if n:
            self.bins[b] = self.bins.get(b, 0) + n
            self.worst = max(self.worst, worst)

    def histogram(self) -> LogHistogram | None:
        if not self.bins:
            return None
        zeros = self.bins.pop(ZERO_BIN, 0)
        return LogHistogram.from_counts(zeros, self.bins, self.worst)


class Tally:
    """Adds up the rolled-up and raw parts of one window into its ``Figures``."""

    def __init__(self) -> None:
        self.legs: dict[str, int] = {}
        self.tools = self.in_doubt = 0
        self.recover, self.lag = _Hist(), _Hist()

    def leg(self, health: str | None, n: int, tools: int, in_doubt: int) -> None:
        """``n`` legs of one class, ``tools`` of them with tool calls, ``in_doubt`` in doubt."""
        key = health or UNKNOWN_HEALTH
        self.legs[key] = self.legs.get(key, 0) + n
        self.tools += tools
        self.in_doubt += in_doubt

    def sample(self, kind: int, b: int | None, n: int, seconds: float) -> None:
        """``n`` samples of one bin (None: one raw sample, binned here) of ``kind``."""
        hist = self.recover if kind == RECOVER else self.lag
        hist.add(bin_of(seconds) if b is None else b, n, seconds)

    def take(self, rows: Iterable[Sequence[object]]) -> Tally:
        """Add the rows ``window_sql`` reads."""
        for kind, health, b, n, tools, in_doubt, seconds in rows:
            if kind == LEGS:
                self.leg(health, int(n), int(tools), int(in_doubt))  # type: ignore[call-overload, arg-type]
            else:
                self.sample(kind, b, int(n), float(seconds))  # type: ignore[arg-type, call-overload]
        return self

    def figures(self) -> Figures:
        """The window's figures."""
        return Figures(
            legs={h: n for h, n in self.legs.items() if n},
            with_tools=self.tools,
            with_in_doubt=self.in_doubt,
            recover=self.recover.histogram(),
            followup_lag=self.lag.histogram(),
        )


#: for a SQL engine that computes bins itself (PostgreSQL's triggers): a sample of at
#: least MIN_SECONDS is in bin ceil(ln(s) / LOG_GAMMA), the rest in ZERO_BIN
SQL_BIN = (
    f"CASE WHEN {{s}} >= {MIN_SECONDS!r} THEN CAST(ceil(ln({{s}}) / {LOG_GAMMA!r}) AS INTEGER) "
    f"ELSE {ZERO_BIN} END"
)
