"""The README's LiveKit section: its example is the example file, which runs; the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchrun import run_bench

ROOT = Path(__file__).resolve().parents[2]


def test_readme_example_is_the_example_file_and_runs() -> None:
    """The README's LiveKit example is examples/livekit_agent.py: held, announced, resumed."""
    example = (ROOT / "examples" / "livekit_agent.py").read_text()
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## LiveKit Agents") :]
    start = section.index("```python\n") + len("```python\n")
    block = section[start : section.index("```\n", start)]
    assert example[example.index("import asyncio") :] == block
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "livekit_agent.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert ["held: ['move_booking']", "announced: announced"] == lines[:2]
    assert "user | Please move booking B1 to eight." == lines[2]
    [tool] = [line for line in lines if line.startswith("tool | ")]
    assert '"status":"succeeded"' in tool
    assert '"delivery":"announced"' in tool
    assert ["user | Thanks!", "assistant | Anything else?"] == lines[-2:]


def test_import_without_livekit_names_the_extra() -> None:
    """Importing the adapter without livekit-agents raises ImportError naming the extra."""
    code = (
        "import sys; sys.modules['livekit.agents'] = None\n"
        "try:\n import callstate.adapters.livekit\n"
        "except ImportError as e: print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install callstate[livekit]" in out.stdout


def test_bench_livekit_prints_every_metric() -> None:
    """bench/bench_livekit.py runs with tiny sizes and prints one ``name value`` per metric."""
    metrics = run_bench("bench_livekit.py", "--turns", "2", "--history", "4", timeout=120)
    assert [
        "turn_plain_p50_ms",
        "turn_attached_p50_ms",
        "tool_turn_attached_p50_ms",
        "restore_ms",
    ] == list(metrics)
    assert all(float(v) > 0 for v in metrics.values())
