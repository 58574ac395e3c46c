"""Smoke runs of the ``bench/`` scripts at tiny sizes, so they keep working.

Only the presence and shape of each metric line is checked, never a timing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
METRIC = re.compile(r"^([a-z0-9_]+) (\S+)$")


def run_bench(script: str, *args: str, timeout: float = 300) -> dict[str, str]:
    """Run ``bench/<script>`` with ``args`` and return its ``name value`` lines, in order.

    Fails the test if the script fails, prints any other line, or prints a name twice.
    """
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert [] == [line for line in lines if not METRIC.match(line)]
    metrics = dict(line.split(" ", 1) for line in lines)
    assert len(lines) == len(metrics), f"a metric printed twice: {lines}"
    return metrics
