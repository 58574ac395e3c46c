"""A smoke run of bench/bench_pipecat.py with tiny sizes, so it keeps working.

Only the presence and shape of each metric line is checked, never a timing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_pipecat.py"
METRIC = re.compile(r"^([a-z0-9_]+) (-?[0-9.]+)$")


def test_bench_pipecat_prints_every_metric() -> None:
    """The Pipecat bench runs both pipelines and prints one parseable line per metric."""
    result = subprocess.run(
        [sys.executable, str(BENCH), "--turns", "4", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert [] == [line for line in lines if not METRIC.match(line)]
    metrics = dict(line.split(" ", 1) for line in lines)
    assert {
        "turns",
        "rounds",
        "frames_per_run",
        "plain_frames_per_wall_s",
        "adapter_frames_per_wall_s",
        "adapter_overhead_wall_pct",
        "adapter_overhead_wall_median_pct",
        "plain_frames_per_cpu_s",
        "adapter_frames_per_cpu_s",
        "adapter_overhead_cpu_pct",
        "adapter_overhead_cpu_median_pct",
    } == set(metrics)
    assert "4" == metrics["turns"]
    assert int(metrics["frames_per_run"]) > 4 * 50  # a second of caller audio per turn, and more
