"""Smoke runs of the core benchmark scripts with tiny sizes, so they keep working.

Only the presence and shape of each metric line is checked, never a timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchrun import run_bench
from services import postgres_url, redis_url


def _number(text: str) -> float:
    return float(text)


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
def test_bench_core_prints_every_metric(store: str, tmp_path: Path) -> None:
    """bench_core.py prints one parseable line per metric for the store it is given."""
    url = f"sqlite:///{tmp_path}/bench.db" if store == "sqlite" else store
    metrics = run_bench(
        "bench_core.py",
        "--store",
        url,
        "--record-events",
        "200",
        "--flush-rounds",
        "5",
        "--batch",
        "20",
        "--sessions",
        "5",
        "--turns",
        "2",
        "--restore-sizes",
        "10,30",
        "--restore-rounds",
        "2",
    )
    expected = {
        "store",
        "record_events",
        "record_mean_us",
        "record_p50_us",
        "record_p99_us",
        "record_after_wait_p50_us",
        "record_steady_p99_us",
        "flush_one_p50_ms",
        "flush_one_p99_ms",
        "flush_batch_events",
        "flush_batch_p50_ms",
        "flush_batch_p99_ms",
        "sustained_sessions",
        "sustained_events",
        "sustained_events_per_s",
        "sustained_flush_p50_ms",
        "sustained_flush_p99_ms",
        "sustained_record_p99_us",
        "restore_30_over_10",
    } | {
        f"{kind}_{n}_{unit}"
        for n in (10, 30)
        for kind, unit in (
            ("restore", "events"),
            ("load", "ms"),
            ("restore", "ms"),
            ("restore", "context_ms"),
        )
    }
    assert expected == set(metrics)
    assert store.partition(":")[0] == metrics["store"]
    assert "5" == metrics["sustained_sessions"]
    assert 5 * 2 * 7 == int(metrics["sustained_events"])
    for name in expected - {"store"}:
        assert 0 <= _number(metrics[name]), name
    ratio = _number(metrics["restore_30_ms"]) / _number(metrics["restore_10_ms"])
    assert ratio == pytest.approx(_number(metrics["restore_30_over_10"]), rel=0.01)


def test_sqlite_driver_prints_both_drivers(tmp_path: Path) -> None:
    """sqlite_driver.py prints commit latency and batch throughput for each driver."""
    metrics = run_bench(
        "sqlite_driver.py",
        "--rounds",
        "5",
        "--batch",
        "10",
        "--batches",
        "3",
        "--dir",
        str(tmp_path),
    )
    expected = {
        f"{driver}_{metric}"
        for driver in ("thread", "queue", "aiosqlite")
        for metric in ("commit_one_p50_ms", "commit_one_p99_ms", "batch_events_per_s")
    }
    assert expected == set(metrics)
    assert all(_number(v) > 0 for v in metrics.values())
    assert [] == list(tmp_path.iterdir())


def test_bench_sinks_prints_paired_rounds_and_medians() -> None:
    """bench_sinks.py prints p50/p99 off and on per round, their ratios and the medians."""
    metrics = run_bench("bench_sinks.py", "--rounds", "2", "--turns", "20")
    expected = {
        f"round{r}_p{p}_{what}"
        for r in (0, 1)
        for p in (50, 99)
        for what in ("us_off", "us_on", "ratio")
    } | {"median_p50_ratio", "median_p99_ratio"}
    assert expected == set(metrics)
    for name in expected:
        assert 0 < _number(metrics[name]), name


def test_bench_stats_prints_every_metric() -> None:
    """bench_stats.py seeds a tiny SQLite archive and prints its seed rate and the legs
    and median time of each fleet_stats window."""
    metrics = run_bench("bench_stats.py", "--stores", "sqlite", "--rows", "300", "--rounds", "1")
    assert 300 == int(metrics["rows"])
    assert 300 == int(metrics["sqlite_fleet_stats_all_legs"])
    for window in ("hour", "day", "all"):
        assert _number(metrics[f"sqlite_fleet_stats_{window}_median_ms"]) >= 0


def test_bench_stats_runs_on_redis_and_postgres() -> None:
    """bench_stats.py seeds Redis and PostgreSQL (COPY in more than one statement) and
    prints each window's legs and time, and on Redis layout 2's read of the same window
    beside it (the bench checks both count the same legs)."""
    metrics = run_bench(
        "bench_stats.py",
        *("--stores", "redis,postgres", "--rows", "1200", "--days", "2", "--rounds", "1"),
        *("--pg-copy-rows", "500"),
        *("--redis", redis_url(), "--postgres", postgres_url()),
    )
    for store in ("redis", "postgres"):
        assert 1200 == int(metrics[f"{store}_fleet_stats_all_legs"])
        assert _number(metrics[f"{store}_archive_insert_us"]) > 0
    for window in ("hour", "day", "all"):
        assert _number(metrics[f"redis_raw_{window}_median_ms"]) >= 0


@pytest.mark.parametrize("what", ["record", "durable", "tool"])
def test_instructions_runs_its_fixed_workload(what: str) -> None:
    """instructions.py runs the hot-path, durable-turn or tool-call workload and says how many."""
    metrics = run_bench("instructions.py", "--what", what, "--turns", "20")
    assert {f"{what}_turns": "20"} == metrics
