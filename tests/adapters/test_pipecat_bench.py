"""A smoke run of bench/bench_pipecat.py with tiny sizes, so it keeps working.

Only the presence and shape of each metric line is checked, never a timing.
"""

from __future__ import annotations

import re

from benchrun import run_bench


def test_bench_pipecat_prints_every_metric() -> None:
    """The Pipecat bench runs both pipelines and prints one parseable line per metric."""
    metrics = run_bench("bench_pipecat.py", "--turns", "4", "--rounds", "1")
    assert [] == [v for v in metrics.values() if not re.fullmatch(r"-?[0-9.]+", v)]
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
