"""The README's Handoff example runs as written, and bench_handoff.py prints its metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchrun import run_bench

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _handoff_example() -> str:
    text = README.read_text()
    section = text.split("\n## Handoff\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert 1 == len(blocks)
    return blocks[0]


def test_readme_handoff_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Handoff section's example hands the call to billing at epoch 2 with its state."""
    monkeypatch.chdir(tmp_path)
    code = _handoff_example()
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out.splitlines()
    assert "billing 2 {'booking': 'B-1042'}" == out[0]
    assert "[{'role': 'user', 'content': 'I was charged twice for my booking'}]" == out[1]
    assert (tmp_path / "handoff.db").is_file()


def test_bench_handoff_prints_every_metric(tmp_path: Path) -> None:
    """bench_handoff.py prints one `name value` line per metric (sizes and timings)."""
    metrics = run_bench(
        "bench_handoff.py",
        "--store",
        f"sqlite:///{tmp_path}/bench.db",
        "--events",
        "150",
        "--rounds",
        "3",
    )
    assert [
        "events",
        "items",
        "package_bytes",
        "package_gzip_bytes",
        "handoff_p50_ms",
        "handoff_p95_ms",
        "offer_p50_ms",
        "accept_p50_ms",
        "handoff_store_p50_ms",
        "handoff_cpu_p50_ms",
        "rounds",
    ] == list(metrics)
    assert 150 <= int(metrics["events"])
    assert 0 < int(metrics["package_gzip_bytes"]) < int(metrics["package_bytes"])
    assert "3" == metrics["rounds"]
