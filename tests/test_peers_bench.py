"""Smoke runs of bench/peers/run.py (callstate vs raw floors vs LangGraph) at tiny sizes.

Only the presence of each metric and the arithmetic of its ratios are checked, never a
timing.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

import services
from benchrun import BENCH, METRIC, run_bench

QUICK_TURNS = 16  # what --quick replays
RESUME = (20, 60)  # the --quick resume sizes


def _num(text: str) -> float:
    return float(text)


def _stems(engine: str) -> set[str]:
    """The metrics every system pair prints for ``engine`` in a quick run."""
    sizes = {
        "sqlite": {"file_bytes", "db_bytes", "wal_bytes", "written_bytes", "checkpointed_bytes"},
        "postgres": {"table_bytes"},
        "redis": {"aof_bytes"},
    }[engine]
    common = {
        "turn_p50_ms",
        "turn_p99_ms",
        "turn_at_10_ms",
        f"turn_at_{QUICK_TURNS}_ms",
        "tool_p50_ms",
        *(f"resume_{n}_ms" for n in RESUME),
        "sustained_events_per_s",
    }
    return {f"{engine}_{m}" for m in common | sizes}


def _check_ratio(metrics: dict[str, str], metric: str, a: str, b: str, rounds: int) -> None:
    """Each per-round ratio is a/b of that round; the printed ratio is their median."""
    per_round = []
    for r in range(1, rounds + 1):
        ratio = _num(metrics[f"{metric}_{a}_r{r}"]) / _num(metrics[f"{metric}_{b}_r{r}"])
        printed = _num(metrics[f"{metric}_{a}_over_{b}_r{r}"])
        assert ratio == pytest.approx(printed, rel=0.01), (metric, r)
        per_round.append(printed)
    median = _num(metrics[f"{metric}_{a}_over_{b}"])
    assert statistics.median(per_round) == pytest.approx(median, rel=0.01), metric


def _run(engines: str, out: Path) -> dict[str, str]:
    return run_bench(
        "peers/run.py", "--quick", "--engines", engines, "--out", str(out), timeout=600
    )


@pytest.mark.parametrize(
    "engines",
    ["sqlite", pytest.param("postgres,redis", marks=pytest.mark.services)],
)
def test_peers_bench_prints_every_measure_and_consistent_ratios(
    engines: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run.py --quick prints each measure per system and round, with ratios that add up."""
    if "postgres" in engines:
        monkeypatch.setenv("CALLSTATE_BENCH_POSTGRES", services.postgres_url())
        services.redis_url()
    out = tmp_path / "report.md"
    metrics = _run(engines, out)
    rounds = 2
    has_lg = find_spec("langgraph") is not None
    assert ("absent" != metrics["langgraph"]) == has_lg
    for engine in engines.split(","):
        for stem in _stems(engine):
            _check_ratio(metrics, stem, "callstate", "floor", rounds)
        for system in ("callstate", "floor"):
            growth = f"{engine}_growth_{QUICK_TURNS}_over_10_{system}"
            for r in range(1, rounds + 1):
                late = _num(metrics[f"{engine}_turn_at_{QUICK_TURNS}_ms_{system}_r{r}"])
                early = _num(metrics[f"{engine}_turn_at_10_ms_{system}_r{r}"])
                assert late / early == pytest.approx(_num(metrics[f"{growth}_r{r}"]), rel=0.01)
            resume = f"{engine}_resume_{RESUME[1]}_over_{RESUME[0]}_{system}"
            assert 0 < _num(metrics[resume])
        if has_lg and engine != "redis":
            for metric in (f"{engine}_turn_p50_ms", f"{engine}_tool_p50_ms"):
                _check_ratio(metrics, metric, "callstate", "langgraph", rounds)
            _check_ratio(metrics, f"{engine}_turn_p50_ms", "langgraph_graph", "floor", rounds)
            _check_ratio(metrics, f"{engine}_resume_{RESUME[1]}_ms", "langgraph", "floor", rounds)
        assert [] == [m for m in metrics if m.startswith("redis_") and "langgraph" in m]
    if "sqlite" in engines:
        _check_ratio(metrics, "sqlite_breakdown_turn_p50_ms", "callstate_normal", "floor_normal", 2)
    _check_ratio(metrics, "hot_record_p99_us", "callstate", "list_append", rounds)
    report = out.read_text()
    assert "| metric | callstate | floor |" in report
    assert f"`{engines.split(',')[0]}_turn_p50_ms`" in report


def test_peers_bench_without_langgraph_leaves_its_columns_out(tmp_path: Path) -> None:
    """With langgraph unimportable the run still completes, notes why, and has no LangGraph metric."""
    out = tmp_path / "report.md"
    script = BENCH / "peers" / "run.py"
    argv = [str(script), "--quick", "--engines", "sqlite", "--out", str(out)]
    code = (
        "import runpy, sys; sys.modules['langgraph'] = None; "  # import langgraph -> ImportError
        f"sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert [] == [line for line in lines if not METRIC.match(line)]
    metrics = dict(line.split(" ", 1) for line in lines)
    assert "absent" == metrics["langgraph"]
    assert [] == [m for m in metrics if "langgraph" in m and m != "langgraph"]
    assert "sqlite_turn_p50_ms_callstate_over_floor" in metrics
    assert "LangGraph columns skipped" in result.stderr
    assert "langgraph" not in out.read_text().split("|", 1)[1]
