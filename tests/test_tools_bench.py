"""A tiny run of bench/bench_tools.py, so the script keeps working (no timing is checked)."""

from __future__ import annotations

import re
from pathlib import Path

from benchrun import run_bench


def test_bench_tools_prints_every_metric(tmp_path: Path) -> None:
    """Each metric is printed once as a `name value` line with a number."""
    metrics = run_bench(
        "bench_tools.py", "--store", f"sqlite:///{tmp_path}/t.db", "--calls", "4", timeout=120
    )
    assert [] == [v for v in metrics.values() if not re.fullmatch(r"\d+\.\d+", v)]
    assert [
        "tool_guard_read_p50_ms",
        "tool_guard_read_p99_ms",
        "tool_guard_write_p50_ms",
        "tool_guard_write_p99_ms",
        "tool_dedup_p50_us",
        "tool_dedup_p99_us",
        "tool_noop_p50_us",
    ] == list(metrics)
