"""examples/gemini_live_agent.py runs offline: a call whose line drops mid-tool goes on."""

from __future__ import annotations

from pathlib import Path

from .examples_run import printed

ROOT = Path(__file__).resolve().parents[2]


def test_example_survives_the_drop_and_voices_the_result() -> None:
    """The example resumes by handle after the drop and the model voices the tool result."""
    out = printed("gemini_live_agent.py")
    assert "resumed (drop), with handle: True" == out[0]
    assert "user | Please move booking B1 to eight tonight." == out[1]
    assert out[3].startswith('tool | {"status":"succeeded"')
    assert "assistant | Done: your booking is now at eight." == out[4]


def test_readme_example_is_the_example_file() -> None:
    """The README's Gemini Live example is examples/gemini_live_agent.py as it stands."""
    example = (ROOT / "examples" / "gemini_live_agent.py").read_text()
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Gemini Live") :]
    start = section.index("```python\n") + len("```python\n")
    block = section[start : section.index("```\n", start)]
    assert example[example.index("import asyncio") :] == block
