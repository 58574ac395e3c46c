"""The README's OpenAI Agents SDK example runs as written and does what the text says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import callstate

from .readme_blocks import Seen, load, section_code

ROOT = Path(__file__).resolve().parents[2]
TITLE = "OpenAI Agents SDK"


def run_block(index: int, *lines: str) -> None:
    """Run the section's ``index``-th python block as a script: it prints ``lines``, and
    nothing goes to stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", section_code(TITLE, index)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "" == result.stderr
    assert "".join(f"{line}\n" for line in lines) == result.stdout


async def run_in_process(
    index: int, capsys: pytest.CaptureFixture[str]
) -> tuple[Any, callstate.Session]:
    """Run the ``index``-th block's ``main`` here: its server and session; its write ran once."""
    seen = Seen()
    ns = load(section_code(TITLE, index), seen)
    await ns["main"]()
    capsys.readouterr()
    (server,) = seen.servers
    (session,) = seen.sessions
    c1 = session.state.calls["c1"]
    assert ("succeeded", 1) == (c1.status, c1.attempts)
    return server, session


def test_readme_agents_example_runs_and_prints_the_recorded_call() -> None:
    """The section's python block runs and prints the guarded write and the conversation."""
    run_block(
        0,
        "move_booking succeeded {'booking_id': 'B1', 'time': '20:00', 'moved': True}",
        "user: Please move booking B1 to eight tonight.",
        "assistant: Done, B1 is at eight.",
    )


async def test_the_write_runs_once_and_the_server_refuses_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As the text says, the registered tool runs once and its outcome is the SDK's tool
    output; no client event of the SDK or of callstate is refused by the server."""
    server, _ = await run_in_process(0, capsys)
    outputs = [
        e for e in server.received
        if e["type"] == "conversation.item.create"
        and e["item"]["type"] == "function_call_output"
    ]  # fmt: skip
    assert 1 == len(outputs)
    assert [] == [s.errors for s in server.sessions if s.errors]
    assert [] == server.malformed


def test_readme_voice_pipeline_example_runs_and_prints_what_was_heard() -> None:
    """The voice pipeline block runs and prints the heard part, the write and the context."""
    run_block(
        1,
        "heard: Done, B1 is at eight tonight.",
        "move_booking succeeded {'booking_id': 'B1', 'time': '20:00', 'moved': True}",
        "user: Please move booking B1 to eight tonight.",
        "assistant: Done, B1 is at eight tonight.",
    )


async def test_the_voice_write_runs_once_and_the_unheard_rest_is_kept_aside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As the text says, the registered tool runs once through the pipeline, the server
    refuses nothing, and the reply is cut where playback stopped with the rest unspoken."""
    server, session = await run_in_process(1, capsys)
    assert ([], 2) == (server.errors, len(server.requests))
    reply = [i for i in session.state.items if i.kind == "assistant"][-1]
    assert (True, "A text is on its way.") == (reply.interrupted, reply.unspoken)
