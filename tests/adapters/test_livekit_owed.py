"""A call a resume re-runs reaches the model of the restored ``AgentSession`` whenever it
lands: before ``restore()``, while it seeds the agent, or once the call goes on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, llm

from callstate import Keeper
from callstate.adapters.livekit import attach, restore
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
    system_texts,
    until,
)

MOVED = {"booking_id": "B1", "time": "20:00", "moved": True}


@dataclass
class Resumed:
    """The session a second worker resumed, whose re-run of ``c1`` waits on ``tools``."""

    session: Session
    tools: Tools


@asynccontextmanager
async def resumed_mid_call(tmp_path: Path) -> AsyncIterator[Resumed]:
    """A worker dies while ``move_booking`` runs; another resumes and re-runs it."""
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    dead_tools, tools = Tools(), Tools()
    first = Keeper(url, tools=dead_tools.registry, secret=SECRET, clock=clock)
    await first.open()
    s = await first.start(agent="booker")
    lk1: AgentSession[Any] = AgentSession(
        llm=ScriptedLLM([Reply(["Moving it."], [("c1", "move_booking", BOOKING)])])
    )
    lk1.output.transcription = GatedOutput()
    rec1 = attach(lk1, s, end_on_close=False)
    await lk1.start(Booker(dead_tools))
    lk1.run(user_input="move my booking to eight")
    await until(lambda: dead_tools.ran == ["move_booking"])
    await s.flush()  # then the worker dies: its tool never answers
    clock.advance(20)
    second = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await second.open()
    try:
        s2 = await second.resume(s.id)
        assert s2.recovery is not None
        assert ["c1"] == s2.recovery.running  # re-run, still going
        yield Resumed(s2, tools)
    finally:
        tools.release["move_booking"].set()
        dead_tools.release["move_booking"].set()
        await lk1.aclose()
        await rec1.wait_idle()
        await second.close()
        await first.close()


def c1_outputs(seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(o["output"]) for o in items_of(seen, "function_call_output")]


def history_outputs(lk: AgentSession[Any]) -> list[str]:
    return [str(i.output) for i in lk.history.items if isinstance(i, llm.FunctionCallOutput)]


async def landed(r: Resumed) -> None:
    r.tools.release["move_booking"].set()
    await until(lambda: "succeeded" == r.session.state.calls["c1"].status)


async def run_restored(r: Resumed, agent: Callable[[], Agent], replies: list[Reply]) -> Any:
    model = ScriptedLLM(replies)
    lk, a, rec = await restore(r.session, {"booker": agent}, llm=model)
    lk.output.transcription = GatedOutput()
    await lk.start(a)
    return lk, rec, model


@pytest.mark.parametrize("when", ["before", "during"])
async def test_a_rerun_landing_before_the_agent_starts_is_in_its_context(
    tmp_path: Path, when: str
) -> None:
    """Landed before restore() or while it seeds the agent: the model sees the result."""
    async with resumed_mid_call(tmp_path) as r:
        if when == "before":
            await landed(r)

        class SeedsSlowly(Booker):
            async def update_chat_ctx(self, chat_ctx: llm.ChatContext, **kw: Any) -> None:
                if when == "during":  # the context was built while the call ran
                    assert '"status":"running"' in str(chat_ctx.items)
                    await landed(r)
                await super().update_chat_ctx(chat_ctx, **kw)

        lk, rec, model = await run_restored(
            r, lambda: SeedsSlowly(r.tools), [Reply(["It's moved to eight."])]
        )
        await lk.run(user_input="hello? did it work?")
        [out] = c1_outputs(model.seen[0])
        assert ("succeeded", MOVED) == (out["status"], out["result"])
        assert not any('"status":"running"' in o for o in history_outputs(lk))
        assert [] == r.session.owed_to_model()  # recorded as given to the model
        await lk.aclose()
        await rec.wait_idle()


async def test_a_rerun_landing_on_a_quiet_line_is_voiced_at_once(
    tmp_path: Path,
) -> None:
    """Landed while nobody talks: one reply is asked for with it, without a caller's turn."""
    async with resumed_mid_call(tmp_path) as r:
        replies = [
            Reply(["Still working on it."]),
            Reply(["It's moved to eight."]),
            Reply(["You're welcome."]),
        ]
        lk, rec, model = await run_restored(r, lambda: Booker(r.tools), replies)
        await lk.run(user_input="hello?")
        assert ["running"] == [o["status"] for o in c1_outputs(model.seen[0])]
        await landed(r)
        await until(lambda: 2 == len(model.seen))  # nobody spoke: the result prompted it
        [out] = c1_outputs(model.seen[1])
        assert ("succeeded", MOVED) == (out["status"], out["result"])
        assert "user" != model.seen[1][-1].get("role")  # no caller turn asked for it
        assert any("move_booking (call c1)" in t for t in system_texts(model.seen[1]))
        assert [] == r.session.owed_to_model()
        assert not any('"status":"running"' in o for o in history_outputs(lk))
        await lk.run(user_input="thanks")  # told once
        assert 3 == len(model.seen)
        assert not any("move_booking (call c1)" in t for t in system_texts(model.seen[2]))
        await lk.aclose()
        await rec.wait_idle()


async def test_outcomes_landing_together_on_a_quiet_line_ask_for_one_reply() -> None:
    """Two outcomes of calls run outside LiveKit landing at once bring one reply, not two."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        s = await k.start(agent="booker")
        model = ScriptedLLM([Reply(["Hello."]), Reply(["Monday and Tuesday are free."])])
        lk: AgentSession[Any] = AgentSession(llm=model)
        lk.output.transcription = GatedOutput()
        rec = attach(lk, s, end_on_close=False)
        await lk.start(Booker(tools))
        await lk.run(user_input="hi")
        runs = [
            asyncio.ensure_future(s.run_tool("check_availability", {"date": d}, call_id=d))
            for d in ("mon", "tue")
        ]
        await until(lambda: 2 == tools.ran.count("check_availability"))
        tools.release["check_availability"].set()
        await asyncio.gather(*runs)
        await until(lambda: 2 == len(model.seen))
        await until(lambda: lk.agent_state == "listening" and lk.current_speech is None)
        await lk.aclose()
        await rec.wait_idle()
    assert 2 == len(model.seen)
    assert {"mon", "tue"} <= {o["call_id"] for o in items_of(model.seen[1], "function_call_output")}
    notes = system_texts(model.seen[1])
    assert 1 == sum("(call mon)" in t for t in notes)
    assert 1 == sum("(call tue)" in t for t in notes)
