"""The README's "Resume and archive" example runs as written and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _section_code() -> str:
    text = README.read_text()
    section = text.split("## Resume and archive\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks, "the section has a python example"
    return blocks[0]


def test_resume_and_archive_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example resumes by token and by caller id and lists three archived calls."""
    monkeypatch.chdir(tmp_path)
    exec(compile(_section_code(), str(README), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out.splitlines()
    assert "resumable" == out[0]
    assert out[1].startswith("The line dropped for ")
    assert "while you were saying “I'm moving it to eight now”" in out[1]
    assert ["3 recovered", "2 recovered", "1 superseded"] == out[2:]
