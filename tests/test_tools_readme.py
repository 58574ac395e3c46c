"""The README's "Tool calls and barge-in" example runs as written and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _section() -> str:
    text = README.read_text()
    match = re.search(r"^## Tool calls and barge-in\n(.*?)^## ", text, flags=re.S | re.M)
    assert match is not None, "the README has no 'Tool calls and barge-in' section"
    return match.group(1)


def test_barge_in_during_a_write_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example (a barge-in during a write tool, then a contradiction) prints its documented output."""
    section = _section()
    [code] = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    [printed] = re.findall(r"^```text\n(.*?)^```", section, flags=re.S | re.M)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})
    assert printed.splitlines() == capsys.readouterr().out.splitlines()
    assert (tmp_path / "tools-demo.db").is_file()
