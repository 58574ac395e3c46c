"""The README's Gemini Live section: its example does what the text says it does."""

from __future__ import annotations

import pytest

import callstate
from callstate.adapters.gemini_live import HANDLE_KEY

from .readme_blocks import Seen, load, section_code

TITLE = "Gemini Live"


async def test_the_drop_resumes_by_handle_and_the_outcome_is_given_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The line drops while the tool runs: the new connection resumes with the journaled
    handle, nothing is replayed, the outcome reaches the model once, as a note, the
    write ran once, and caller and model turns come from the transcriptions."""
    seen = Seen()
    ns = load(section_code(TITLE), seen)
    await ns["main"]()
    out = capsys.readouterr().out.splitlines()
    (server,) = seen.servers
    (session,) = seen.sessions
    first, second = server.sessions
    (call,) = session.state.calls.values()
    assert "resumed (drop), with handle: True" == out[0]
    assert first.resumed_from is None
    assert second.resumed_from is not None
    assert second.resumed_from in server.handles
    tool_responses = [m for s in server.sessions for m in s.received if "toolResponse" in m]
    (note,) = [m["clientContent"] for m in second.received if "clientContent" in m]
    assert [] == tool_responses  # the call was asked on the connection that dropped
    assert f"(result of move_booking, call {call.wire_id or call.call_id}:" in str(note)
    assert note["turnComplete"]  # voiced at once
    assert ("succeeded", 1) == (call.status, call.attempts)
    assert [] == session.owed_to_model()
    assert session.state.userdata[HANDLE_KEY] in server.handles
    assert [("user", "Please move booking B1 to eight tonight.")] == [
        (m["role"], m["content"]) for m in session.context() if m["role"] == "user"
    ]
    assert "Done: your booking is now at eight." == session.context()[-1]["content"]
    assert [] == [s.refused for s in server.sessions if s.refused]


async def test_without_the_secret_the_caller_id_is_refused() -> None:
    """The secret the example passes is what lets it record the caller's number: without
    it ``keeper.start(caller=...)`` raises ConfigError naming ``secret``."""
    code = section_code(TITLE)
    ns = load(code.replace("secret=SECRET, ", ""), Seen())
    assert "secret=SECRET, " in code
    with pytest.raises(callstate.ConfigError, match="secret"):
        await ns["main"]()
