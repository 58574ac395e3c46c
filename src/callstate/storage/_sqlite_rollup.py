"""The SQLite store's fleet-figure rollup: legs per hour (migration 8) and day (migration
9) of ``closed_at``, follow-up lag per hour and day it was due (migration 10).

``roll_up`` runs in the archive insert's transaction and ``roll_up_lag`` in a
follow-up's settle, so the rollup never misses or double-counts a write and a killed
process leaves it as the rows are. ``read_figures`` reads a window as
``storage.rollup.plan`` splits it, in one statement.
"""

from __future__ import annotations

import sqlite3

from .base import ArchiveRow
from .figures import UNKNOWN_HEALTH, Figures
from .rollup import DAY_HOURS, Tally, bin_of, hour_of, plan, window_sql

__all__ = ["read_figures", "roll_up", "roll_up_lag"]

_SAMPLE = (
    "INSERT INTO {t} VALUES (?, ?, 1, ?) ON CONFLICT ({k}, bin) "
    "DO UPDATE SET n = n + 1, worst = max(worst, excluded.worst)"
)


def _sample(c: sqlite3.Connection, table: str, at: float, seconds: float) -> None:
    hour = hour_of(at)
    for t, k, key in ((table, "hour", hour), (table + "_day", "day", hour // DAY_HOURS)):
        c.execute(_SAMPLE.format(t=t, k=k), (key, bin_of(seconds), seconds))


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
        _sample(c, "archive_recover_rollup", row.closed_at, row.recover_s)


def roll_up_lag(c: sqlite3.Connection, due_at: float, finished_at: float) -> None:
    """Count one succeeded follow-up's lag in the hour and day it was due (inside the
    settle's transaction)."""
    _sample(c, "followup_lag_rollup", due_at, finished_at - due_at)


def read_figures(c: sqlite3.Connection, since: float, until: float) -> Figures:
    """The figures of ``[since, until)``: whole days and hours rolled up, the edges raw."""
    sql, args = window_sql(plan(since, until), "", "?")
    return Tally().take(c.execute(sql, args)).figures()
