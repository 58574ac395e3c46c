"""The SQLite fleet-figure rollup: any window equals the raw scan; migrations 8 and 9 roll up."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from callstate.archive.fleet import FleetStats, Percentiles, from_figures
from callstate.storage.base import ArchiveRow
from callstate.storage.histogram import MIN_SECONDS, RELATIVE_ERROR
from callstate.storage.memory import MemoryStore
from callstate.storage.sqlite import MIGRATIONS, SQLiteStore

HOUR = 3600.0
DAY = 24 * HOUR
HEALTH = st.sampled_from([None, "clean", "recovered", "superseded", "degraded"])


@st.composite
def archive_rows(draw: st.DrawFn) -> list[ArchiveRow]:
    """Legs closed over a few hours or days, some exactly on an hour's edge."""
    n = draw(st.integers(min_value=0, max_value=40))
    rows = []
    for i in range(n):
        at = draw(
            st.one_of(
                st.floats(min_value=0.0, max_value=5 * HOUR),
                st.floats(min_value=0.0, max_value=3 * DAY),
                st.integers(min_value=0, max_value=72).map(lambda h: h * HOUR),
            )
        )
        recover = draw(st.one_of(st.none(), st.floats(min_value=0.0, max_value=600.0)))
        rows.append(
            ArchiveRow(
                record_id=f"r{i}:1",
                session_id=f"s{i}",
                caller_hash=None,
                ended_at=at,
                outcome="completed",
                data=b"{}",
                closed_at=at,
                health=draw(HEALTH),
                tools=draw(st.integers(min_value=0, max_value=2)),
                in_doubt=draw(st.integers(min_value=0, max_value=1)),
                recover_s=recover,
            )
        )
    return rows


def _close(exact: float, got: float) -> bool:
    if exact < MIN_SECONDS:
        return got == 0.0
    return abs(got - exact) <= exact * RELATIVE_ERROR * (1 + 1e-9)


def _assert_same(exact: FleetStats, rolled: FleetStats) -> None:
    assert (exact.legs, exact.calls, exact.health) == (rolled.legs, rolled.calls, rolled.health)
    assert (exact.recovered_rate, exact.in_doubt_rate) == (
        rolled.recovered_rate,
        rolled.in_doubt_rate,
    )
    assert exact.followup_lag == rolled.followup_lag
    a, b = exact.time_to_recover, rolled.time_to_recover
    assert (a is None) == (b is None)
    if isinstance(a, Percentiles) and isinstance(b, Percentiles):
        assert (a.count, a.max) == (b.count, b.max)
        for want, got in ((a.p50, b.p50), (a.p90, b.p90), (a.p99, b.p99)):
            assert _close(want, got)


async def _compare(path: Path, rows: list[ArchiveRow], windows: list[tuple[float, float]]) -> None:
    memory, lite = MemoryStore("memory://"), SQLiteStore(f"sqlite:///{path}")
    await memory.open()
    await lite.open()
    try:
        for row in rows:
            await memory.archive_insert(row)
            await lite.archive_insert(row)
        for since, until in windows:
            exact = from_figures(
                await memory.archive_figures(since, until), since=since, until=until
            )
            rolled = from_figures(
                await lite.archive_figures(since, until), since=since, until=until
            )
            _assert_same(exact, rolled)
    finally:
        await memory.close()
        await lite.close()


edges = st.one_of(
    st.floats(min_value=-HOUR, max_value=7 * HOUR),
    st.floats(min_value=-HOUR, max_value=4 * DAY),
    st.integers(min_value=-1, max_value=80).map(lambda h: h * HOUR),
)


@given(archive_rows(), st.lists(st.tuples(edges, edges), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_any_window_equals_the_raw_scan(
    rows: list[ArchiveRow], windows: list[tuple[float, float]]
) -> None:
    """SQLite's rolled-up figures of any window equal the memory store's raw scan: counts
    exactly, percentiles within RELATIVE_ERROR."""
    spans = [(min(a, b), max(a, b) + 1.0) for a, b in windows]
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_compare(Path(tmp) / "cs.db", rows, spans))


def test_migrations_8_and_9_roll_up_rows_already_archived(tmp_path: Path) -> None:
    """Rows archived at schema 7 are counted by the hourly and daily rollups after
    migrations 8 and 9."""
    path = tmp_path / "cs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE callstate_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for version, script in MIGRATIONS:
        if version > 7:
            break
        for stmt in script.split(";\n"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("INSERT INTO callstate_migrations VALUES (?, 0)", (version,))
    old = [
        ("r1:1", 10.0, "recovered", 1, 0, 4.0),
        ("r2:1", 2 * HOUR + 5, "recovered", 2, 1, 0.0),
        ("r3:1", 3 * HOUR, "clean", 0, 0, None),
        ("r4:1", 3 * HOUR + 9, None, 1, 1, None),
    ]
    for rid, at, health, tools, in_doubt, recover in old:
        conn.execute(
            "INSERT INTO archive (record_id, session_id, caller_hash, ended_at, outcome, data, "
            "closed_at, health, tools, in_doubt, recover_s) VALUES (?, ?, NULL, ?, 'completed', "
            "x'7b7d', ?, ?, ?, ?, ?)",
            (rid, rid, at, at, health, tools, in_doubt, recover),
        )
    conn.close()

    async def check() -> None:
        store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        try:
            figures = await store.archive_figures(0.0, 5 * HOUR)
            stats = from_figures(figures, since=0.0, until=5 * HOUR)
            assert {"recovered": 2, "clean": 1, "unknown": 1} == stats.health
            assert (3, 2) == (figures.with_tools, figures.with_in_doubt)
            assert figures.recover is not None
            assert (2, 1, 4.0) == (
                figures.recover.count,
                figures.recover.zeros,
                figures.recover.max,
            )
            for table in ("archive_rollup", "archive_rollup_day"):
                assert (4,) == conn2.execute(f"SELECT sum(legs) FROM {table}").fetchone()
        finally:
            await store.close()

    conn2 = sqlite3.connect(path)
    try:
        asyncio.run(check())
    finally:
        conn2.close()
