"""Run an example script as a user would, offline, and read what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def printed(example: str) -> list[str]:
    """The lines ``examples/<example>`` prints, run with warnings as errors."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    ).stdout.splitlines()
