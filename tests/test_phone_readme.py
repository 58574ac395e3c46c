"""The README's "Phone calls" example runs as written and prints exactly what it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _section() -> str:
    return README.read_text().split("## Phone calls\n", 1)[1].split("\n## ", 1)[0]


def test_phone_calls_example_prints_what_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ring-back inside the grace gives one follow-up of both legs; one after it gives
    two, the second with only the new request and the first's result."""
    section = _section()
    (code,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    printed = re.search(r"It prints:\n\n```\n(.*?)^```", section, flags=re.S | re.M)
    assert printed is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})
    assert printed.group(1) == capsys.readouterr().out
