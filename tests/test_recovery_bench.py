"""A smoke run of bench/bench_resume.py with tiny sizes, so it keeps working.

Only the presence and shape of each metric line is checked, never a timing.
"""

from __future__ import annotations

from pathlib import Path

from benchrun import run_bench


def test_bench_resume_prints_every_metric(tmp_path: Path) -> None:
    """bench_resume.py prints one parseable ``name value`` line per metric."""
    metrics = run_bench(
        "bench_resume.py",
        "--store",
        f"sqlite:///{tmp_path}/bench.db",
        "--sessions",
        "2",
        "--events",
        "60",
        "--rounds",
        "2",
    )
    assert {
        "store",
        "sessions",
        "events_per_session",
        "preflight_p50_ms",
        "preflight_p99_ms",
        "plan_only_p50_ms",
        "resume_first_p50_ms",
        "resume_first_p99_ms",
        "resume_samples",
        "resume_p50_ms",
        "resume_p99_ms",
        "resume_max_ms",
    } == set(metrics)
    assert ("sqlite", "2", "4") == (
        metrics["store"],
        metrics["sessions"],
        metrics["resume_samples"],
    )
    assert float(metrics["resume_p50_ms"]) > 0
