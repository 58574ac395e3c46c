"""A smoke run of bench/bench_web.py with 3 reloads in headless Chromium, so it keeps working.

Only the presence and shape of each metric line is checked, never a timing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchrun import run_bench

# a reload is one resume request (a refusal carries the preflight's answer), so the
# bench prints no preflight_* figures for today's client
FIGURES = (
    "ours",
    "resume",
    "server_ours",
    "server_resume",
    "transport",
    "mic",
    "gather",
    "offer",
    "server_offer",
    "open",
    "page",
    "reconnect",
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_bench_web_prints_every_metric_for_each_reload(tmp_path: Path) -> None:
    """bench_web.py reloads the page 3 times (after a warm-up) and prints every figure."""
    metrics = run_bench(
        "bench_web.py", "--reloads", "3", "--store", f"sqlite:///{tmp_path}/bench.db"
    )
    expected = {"endpoints", "reloads", "epochs"} | {
        f"{name}_{p}_ms" for name in FIGURES for p in ("p50", "p95")
    }
    assert expected == set(metrics)
    assert "shared" == metrics["endpoints"]  # callstate's endpoints in the example's process
    assert "3" == metrics["reloads"]
    assert "3..5" == metrics["epochs"]  # start at 1, the warm-up resume at 2, then 3 reloads
    for name in expected - {"endpoints", "reloads", "epochs"}:
        assert 0 <= float(metrics[name]), name
