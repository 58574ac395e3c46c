"""The README's OpenAI Agents SDK example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_agents_example_runs_and_prints_the_guarded_call() -> None:
    """The section's python block runs the guarded write and prints its recorded outcome."""
    section = (ROOT / "README.md").read_text().split("## OpenAI Agents SDK\n", 1)[1]
    code = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert "" == result.stderr
    expected = "move_booking succeeded {'booking_id': 'B1', 'time': '20:00', 'moved': True}\n"
    assert expected == result.stdout
