"""The README's opening: the two set-up commands, then an example that runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    """The first code block is exactly the two commands a newcomer runs, demo first."""
    first = re.search(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(2).splitlines()]
    assert ("bash", ["bash scripts/demo", "bash scripts/test"]) == (first.group(1), commands)


def test_readme_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first python block runs unchanged, writes ./callstate.db and prints the resume."""
    code = _blocks("python")[0]
    assert 30 >= len(code.strip().splitlines())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out.splitlines()
    assert (tmp_path / "callstate.db").is_file()
    assert out[0].startswith("epoch 2 | unspoken: ")
    assert "and texting you a confirmation." in out[0]
    assert [
        "user | Hi, can you move my booking to eight tonight?",
        "assistant | Sure, moving it to eight",
        "user | Make it half past eight, please.",
    ] == out[1:]
