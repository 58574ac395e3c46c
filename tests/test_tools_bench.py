"""A tiny run of bench/bench_tools.py, so the script keeps working (no timing is checked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_tools.py"


def test_bench_tools_prints_every_metric(tmp_path: Path) -> None:
    """Each metric is printed once as a `name value` line with a number."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "--store", f"sqlite:///{tmp_path}/t.db", "--calls", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    names = [m.group(1) for m in re.finditer(r"^(\w+) \d+\.\d+$", result.stdout, flags=re.M)]
    assert [
        "tool_guard_read_p50_ms",
        "tool_guard_read_p99_ms",
        "tool_guard_write_p50_ms",
        "tool_guard_write_p99_ms",
        "tool_dedup_p50_us",
        "tool_dedup_p99_us",
        "tool_noop_p50_us",
    ] == names
    assert len(names) == len(result.stdout.splitlines())
