"""A LiveKit ``AgentSession`` whose session another worker took over: one signal, then
nothing more is recorded (no ``StaleEpochError`` per event, no tool run)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentSession

from callstate import CallstateError, Keeper, StaleEpochError
from callstate.adapters.livekit import attach
from callstate.session import Session
from callstate.testing import FakeClock

from .test_livekit_harness import (
    BOOKING,
    SECRET,
    Booker,
    GatedOutput,
    Reply,
    ScriptedLLM,
    Tools,
    items_of,
    until,
)


async def test_a_fenced_agent_session_is_told_once_and_stops_recording(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a second keeper takes the call over, on_fenced fires once, one warning is
    logged, the old session records nothing and its tools do not run; LiveKit goes on."""
    url = f"sqlite:///{tmp_path}/calls.db"
    tools = Tools()
    tools.release["move_booking"].set()
    replies = [
        Reply(["Hello there."]),
        Reply(["Moving it."], [("c2", "move_booking", BOOKING)]),
        Reply(["Still here."]),
    ]
    async with (
        Keeper(url, tools=tools.registry, secret=SECRET, clock=FakeClock()) as a,
        Keeper(url, tools=tools.registry, secret=SECRET, clock=FakeClock()) as b,
    ):
        s = await a.start(agent="booker")
        model = ScriptedLLM(replies)
        lk: AgentSession[Any] = AgentSession(llm=model)
        lk.output.transcription = GatedOutput()
        rec = attach(lk, s)
        fenced: list[tuple[Session, CallstateError]] = []
        rec.on_fenced(lambda session, error: fenced.append((session, error)))
        await lk.start(Booker(tools))
        await lk.run(user_input="hello")
        await s.flush()
        taken = await b.resume(s.id)  # another worker takes the call
        with caplog.at_level(logging.WARNING):
            await lk.run(user_input="move my booking to eight")  # the old worker learns it
            await until(lambda: bool(fenced))
            seq = s.state.seq
            await lk.run(user_input="are you there?")
            await lk.aclose()
            await rec.wait_idle()
        [(session, error)] = fenced
        assert (s, True) == (session, isinstance(error, StaleEpochError))
        assert seq == s.state.seq  # nothing more recorded
        assert [] == tools.ran  # the write was refused, not run
        [out] = items_of(model.seen[2], "function_call_output")
        assert True is out["is_error"]
        assert "another worker took this call over" in out["output"]
        assert "Still here." in [m.text_content for m in lk.history.messages()]
        assert [] == [e for e in rec.errors if isinstance(e, StaleEpochError)]
        taken_over = [r for r in caplog.records if "was taken over" in r.getMessage()]
        assert 1 == len(taken_over)
        assert [] == [r for r in caplog.records if "StaleEpochError" in r.getMessage()]
        assert [] == [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
        assert 1 == a.observer.counts["session.fenced"]
        assert "active" == taken.state.status  # the old one's close did not end the call
        late: list[CallstateError] = []
        rec.on_fenced(lambda _s, e: late.append(e))  # subscribing late still hears it
        assert [error] == late
