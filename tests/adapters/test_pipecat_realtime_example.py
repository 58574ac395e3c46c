"""examples/pipecat_realtime_bot.py runs offline on both speech-to-speech services and ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipecat_realtime_bot.py"
#: what pyproject's filterwarnings lets through: Pipecat's own import-time warnings
ALLOWED = [
    "ignore:'audioop' is deprecated:DeprecationWarning",
    "ignore:`AudioContextTTSService` is deprecated:DeprecationWarning",
    "ignore:Setting `LiveConnectConfig.generation_config` is deprecated",
]


def run(provider: str, *more: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    flags = ["-W", "error", *(f for w in ALLOWED for f in ("-W", w))]
    return subprocess.run(
        [sys.executable, *flags, str(EXAMPLE), "--provider", provider, *more],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,  # the pipeline must end on its own: a hang fails here
        env=env,
    )


@pytest.mark.parametrize(
    ("provider", "said"),
    [
        ("openai", ["Hello, how can I help?", "Done: your booking is now at eight."]),
        ("gemini", ["Done: your booking is now at eight."]),
    ],
)
def test_the_example_moves_the_booking_once_and_ends(provider: str, said: list[str]) -> None:
    """The model's call runs once through the guard, its reply is heard, nothing stays owed,
    the process exits 0, and Pipecat logs no error and no deprecation."""
    done = run(provider)
    assert (0, "") == (done.returncode, done.stderr if done.returncode else "")
    assert [
        *(f"{provider} said | {s}" for s in said),
        "call | move_booking succeeded, attempts: 1",
        "owed to the model | 0",
    ] == done.stdout.splitlines()
    bad = ("is deprecated since", "| ERROR ")  # no Pipecat deprecation, no error logged
    assert [] == [line for line in done.stderr.splitlines() if any(b in line for b in bad)]


@pytest.mark.parametrize(
    ("provider", "greeting"), [("openai", ["Hello, how can I help?"]), ("gemini", [])]
)
def test_the_example_carries_the_call_across_the_drop(provider: str, greeting: list[str]) -> None:
    """``--drop``: OpenAI's cap or Gemini's dropped socket ends the connection after the
    booking; the caller's next question is answered in the new session (no new greeting),
    the link loss and restore are emitted, and the write still ran once."""
    done = run(provider, "--drop")
    assert (0, "") == (done.returncode, done.stderr if done.returncode else "")
    said = [*greeting, "Done: your booking is now at eight.", "It is at eight tonight, as we said."]
    assert [
        *(f"{provider} said | {s}" for s in said),
        "link | link.lost, link.restored",
        "call | move_booking succeeded, attempts: 1",
        "owed to the model | 0",
    ] == done.stdout.splitlines()
    assert [] == [line for line in done.stderr.splitlines() if "| ERROR " in line]


def test_the_readme_shows_the_example() -> None:
    """README's Pipecat section points at the realtime example and names both services."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Pipecat") : readme.index("## LiveKit Agents")]
    part = section[section.index("**Speech-to-speech services**") :]
    assert "examples/pipecat_realtime_bot.py" in part
    assert "--provider gemini" in part
    assert "--drop" in part
