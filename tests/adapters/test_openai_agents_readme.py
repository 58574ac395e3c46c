"""The README's OpenAI Agents SDK example runs as written and does what the text says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .readme_blocks import Seen, load, section_code

ROOT = Path(__file__).resolve().parents[2]
TITLE = "OpenAI Agents SDK"


def test_readme_agents_example_runs_and_prints_the_recorded_call() -> None:
    """The section's python block runs and prints the guarded write and the conversation."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", section_code(TITLE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "" == result.stderr
    expected = (
        "move_booking succeeded {'booking_id': 'B1', 'time': '20:00', 'moved': True}\n"
        "user: Please move booking B1 to eight tonight.\n"
        "assistant: Done, B1 is at eight.\n"
    )
    assert expected == result.stdout


async def test_the_write_runs_once_and_the_server_refuses_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As the text says, the registered tool runs once and its outcome is the SDK's tool
    output; no client event of the SDK or of callstate is refused by the server."""
    seen = Seen()
    ns = load(section_code(TITLE), seen)
    await ns["main"]()
    capsys.readouterr()
    (server,) = seen.servers
    (session,) = seen.sessions
    c1 = session.state.calls["c1"]
    assert ("succeeded", 1) == (c1.status, c1.attempts)
    outputs = [
        e for e in server.received
        if e["type"] == "conversation.item.create"
        and e["item"]["type"] == "function_call_output"
    ]  # fmt: skip
    assert 1 == len(outputs)
    assert [] == [s.errors for s in server.sessions if s.errors]
    assert [] == server.malformed
