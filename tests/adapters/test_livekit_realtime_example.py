"""examples/livekit_realtime_agent.py runs offline, and the README's LiveKit section names it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_realtime_example_runs_held_announced_and_restored() -> None:
    """The example's write is held at the barge-in, announced, and the resumed session has it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "livekit_realtime_agent.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    lines = out.stdout.splitlines()
    assert ["held: held", "announced: announced"] == lines[:2]
    assert lines[2].startswith("system | The caller interrupted while move_booking (call c1)")
    # the resumed realtime session's conversation: the whole call, then the note, then on
    assert "user | Please move booking B1 to eight." == lines[3]
    [output] = [line for line in lines if line.startswith("function_call_output | ")]
    assert '"delivery":"announced"' in output
    assert any(line.startswith("system | The line dropped") for line in lines[4:])
    assert ["user | Thanks!", "assistant | Anything else?"] == lines[-2:]


def test_the_readme_names_the_realtime_models_and_the_example() -> None:
    """README's LiveKit section has the realtime models, the Gemini limits and the example."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## LiveKit Agents") : readme.index("## OpenAI Realtime")]
    realtime = section[section.index("### Realtime models") :]
    for needle in (
        "realtime.RealtimeModel",
        "[note for the assistant, not said by the caller]",
        "examples/livekit_realtime_agent.py",
        "GOOGLE_API_KEY",
    ):
        assert needle in realtime
