"""The SQLite store's fleet-figure rollup: per hour (migration 8) and per day
(migration 9) of ``closed_at``.

``roll_up`` runs in the archive insert's transaction; ``read_figures`` reads a window's
whole days, then the whole hours at its ends, from the rollup and only its two partial
edge hours from the archive, so a window costs at most its days plus 2 x 23 hours plus
two hours of records, not its records. Follow-up lag is still read from the ledger (a
follow-up's lag is known only once it finishes, and the ledger is small next to the
archive).
"""

from __future__ import annotations

import math
import sqlite3

from ._sqlite_schema import DAY_HOURS, ROLLUP_S, ZERO_BIN, bin_of, hour_of
from .base import ArchiveRow
from .figures import UNKNOWN_HEALTH, Figures
from .histogram import LogHistogram

__all__ = ["read_figures", "roll_up"]


def roll_up(c: sqlite3.Connection, row: ArchiveRow) -> None:
    """Count one archived leg in its hour and its day (inside the insert's transaction)."""
    if row.closed_at is None:
        return  # not counted by fleet figures
    hour = hour_of(row.closed_at)
    legs = (row.health or UNKNOWN_HEALTH, int(row.tools > 0), int(row.in_doubt > 0))
    for table, key, at in (
        ("archive_rollup", "hour", hour),
        ("archive_rollup_day", "day", hour // DAY_HOURS),
    ):
        c.execute(
            f"INSERT INTO {table} VALUES (?, ?, 1, ?, ?) ON CONFLICT ({key}, health) DO "
            "UPDATE SET legs = legs + 1, tools = tools + excluded.tools, "
            "in_doubt = in_doubt + excluded.in_doubt",
            (at, *legs),
        )
    if row.recover_s is not None:
        for table, key, at in (
            ("archive_recover_rollup", "hour", hour),
            ("archive_recover_rollup_day", "day", hour // DAY_HOURS),
        ):
            c.execute(
                f"INSERT INTO {table} VALUES (?, ?, 1, ?) ON CONFLICT ({key}, bin) "
                "DO UPDATE SET n = n + 1, worst = max(worst, excluded.worst)",
                (at, bin_of(row.recover_s), row.recover_s),
            )


def _raw(c: sqlite3.Connection, since: float, until: float, acc: _Acc) -> None:
    window = (since, until)
    for health, n, tools, in_doubt in c.execute(
        "SELECT health, count(*), sum(tools > 0), sum(in_doubt > 0) FROM archive "
        "WHERE closed_at >= ? AND closed_at < ? GROUP BY health",
        window,
    ):
        acc.add(health or UNKNOWN_HEALTH, n, tools, in_doubt)
    for (s,) in c.execute(
        "SELECT recover_s FROM archive WHERE closed_at >= ? AND closed_at < ? "
        "AND recover_s IS NOT NULL",
        window,
    ):
        acc.sample(bin_of(s), 1, s)


class _Acc:
    def __init__(self) -> None:
        self.legs: dict[str, int] = {}
        self.tools = self.in_doubt = 0
        self.bins: dict[int, int] = {}
        self.worst = 0.0

    def add(self, health: str, n: int, tools: int, in_doubt: int) -> None:
        self.legs[health] = self.legs.get(health, 0) + n
        self.tools += tools
        self.in_doubt += in_doubt

    def sample(self, b: int, n: int, worst: float) -> None:
        self.bins[b] = self.bins.get(b, 0) + n
        self.worst = max(self.worst, worst)


def _rolled(c: sqlite3.Connection, level: str, key: str, lo: int, hi: int, acc: _Acc) -> None:
    if lo >= hi:
        return
    for health, n, tools, in_doubt in c.execute(
        f"SELECT health, sum(legs), sum(tools), sum(in_doubt) FROM archive_rollup{level} "
        f"WHERE {key} >= ? AND {key} < ? GROUP BY health",
        (lo, hi),
    ):
        acc.add(health, n, tools, in_doubt)
    for b, n, worst in c.execute(
        f"SELECT bin, sum(n), max(worst) FROM archive_recover_rollup{level} "
        f"WHERE {key} >= ? AND {key} < ? GROUP BY bin",
        (lo, hi),
    ):
        acc.sample(b, n, worst)


def read_figures(c: sqlite3.Connection, since: float, until: float) -> Figures:
    """The figures of ``[since, until)``: whole hours rolled up, the edges read raw."""
    acc = _Acc()
    lo, hi = math.ceil(since / ROLLUP_S), math.floor(until / ROLLUP_S)
    lo += lo * ROLLUP_S < since  # the division rounded: keep whole hours inside the window
    hi -= hi * ROLLUP_S > until
    if lo >= hi:
        _raw(c, since, until, acc)
    else:
        _raw(c, since, lo * ROLLUP_S, acc)
        _raw(c, hi * ROLLUP_S, until, acc)
        dlo, dhi = -(-lo // DAY_HOURS), hi // DAY_HOURS
        if dlo >= dhi:
            _rolled(c, "", "hour", lo, hi, acc)
        else:
            _rolled(c, "", "hour", lo, dlo * DAY_HOURS, acc)
            _rolled(c, "", "hour", dhi * DAY_HOURS, hi, acc)
            _rolled(c, "_day", "day", dlo, dhi, acc)
    lag = c.execute(
        "SELECT updated_at - due_at FROM followups WHERE status = 'done' "
        "AND due_at >= ? AND due_at < ? AND mark = 'succeeded'",
        (since, until),
    ).fetchall()
    zeros = acc.bins.pop(ZERO_BIN, 0)
    return Figures(
        legs={h: n for h, n in acc.legs.items() if n},
        with_tools=acc.tools,
        with_in_doubt=acc.in_doubt,
        recover=LogHistogram.from_counts(zeros, acc.bins, acc.worst) if acc.bins or zeros else None,
        followup_lag_s=[r[0] for r in lag],
    )
