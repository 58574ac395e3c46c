"""A smoke run of bench/bench_dashboard.py at a tiny size, so it keeps working.

Only the presence and shape of each metric line is checked, never a timing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchrun import run_bench

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists() and os.environ.get("CALLSTATE_REQUIRE_SERVICES") != "1",
    reason="needs Debian's chromium at /usr/bin/chromium (scripts/test installs it)",
)


def test_bench_dashboard_prints_every_metric() -> None:
    """bench_dashboard.py prints p50/p95 of each phase for a small call."""
    metrics = run_bench("bench_dashboard.py", "--events", "300", "--runs", "2")
    phases = ("fetch", "render", "total", "painted", "load")
    expected = ["events", "runs"] + [f"{p}_{q}_ms" for p in phases for q in ("p50", "p95")]
    assert [*expected, "total_mean_ms", "svg_elements"] == list(metrics)
    assert "2" == metrics["runs"]
    assert 300 <= int(metrics["events"])
    assert all(float(metrics[name]) > 0 for name in expected[2:])
