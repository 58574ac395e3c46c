"""``restore()`` continues a call in a new ``AgentSession``: its history holds the whole
call, and the agent does not greet the caller a second time."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import AgentSession, llm

from callstate import Keeper
from callstate.adapters.livekit import attach, restore
from callstate.session import Session
from callstate.testing import FakeClock

from .test_livekit_harness import SECRET, Booker, GatedOutput, Reply, ScriptedLLM, Tools

WELCOME = "Welcome to the booking line."


class Greeter(Booker):
    """Greets the caller when it enters the call (LiveKit's ``on_enter``)."""

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Greet the caller.")


def history_of(lk: AgentSession[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i in lk.history.items:
        if isinstance(i, llm.ChatMessage) and i.role in ("user", "assistant"):
            out.append((i.role, i.text_content or ""))
        elif isinstance(i, llm.FunctionCall | llm.FunctionCallOutput):
            out.append((i.type, i.call_id))
    return out


async def first_call(keeper: Keeper, tools: Tools) -> Session:
    """A call greeted on entry, with a tool call; the worker then goes away."""
    s = await keeper.start(caller="+15551234567", agent="booker")
    model = ScriptedLLM(
        [
            Reply([WELCOME]),
            Reply(["Let me check."], [("c1", "check_availability", {"date": "mon"})]),
            Reply(["Seven or eight are free."]),
        ]
    )
    lk: AgentSession[Any] = AgentSession(llm=model)
    lk.output.transcription = GatedOutput()
    rec = attach(lk, s, agents={"booker": lambda: Greeter(tools)}, end_on_close=False)
    await lk.start(Greeter(tools))
    await lk.run(user_input="is monday free")
    await s.flush()
    await lk.aclose()
    await rec.wait_idle()
    return s


async def test_restore_seeds_the_history_and_does_not_greet_again() -> None:
    """The new session's history is the whole call; on_enter's greeting is not spoken again."""
    tools = Tools()
    tools.release["check_availability"].set()
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        s = await first_call(k, tools)
        before = [(i.kind, i.text) for i in s.state.items]
        # the greeting is generated while nothing plays, the reply while it plays: each
        # is recorded as its own utterance, in the order the caller heard them
        assert [
            ("assistant", WELCOME),
            ("user", "is monday free"),
            ("assistant", "Let me check."),
            ("call", ""),
            ("assistant", "Seven or eight are free."),
        ] == before
        resumed = await k.resume(s.id)
        model = ScriptedLLM([Reply(["Anything else?"])])
        lk, agent, rec = await restore(resumed, {"booker": lambda: Greeter(tools)}, llm=model)
        lk.output.transcription = GatedOutput()
        earlier = [
            ("assistant", WELCOME),
            ("user", "is monday free"),
            ("assistant", "Let me check."),
            ("function_call", "c1"),
            ("function_call_output", "c1"),
            ("assistant", "Seven or eight are free."),
        ]
        assert earlier == history_of(lk)  # before start: the app's record is whole
        await lk.start(agent)
        await lk.run(user_input="thanks")
        assert [*earlier, ("user", "thanks"), ("assistant", "Anything else?")] == history_of(lk)
        assert 1 == len(model.seen)  # the model ran for the caller's turn only
        assert [*before, ("user", "thanks"), ("assistant", "Anything else?")] == [
            (i.kind, i.text) for i in resumed.state.items
        ]
        await lk.aclose()
        await rec.wait_idle()


async def test_an_agent_taking_over_a_handed_off_call_does_enter() -> None:
    """A package accepted into a new agent runs its on_enter: it meets the caller now."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        s = await k.start(caller="+15551234567", agent="triage")
        s.user_said("I need to change my booking")
        pkg = await s.handoff(to="booker", reason="a booking question")
        accepted = await k.accept(pkg.to_bytes())
        model = ScriptedLLM([Reply(["Hi, I'm the booking desk."])])
        lk, agent, rec = await restore(accepted, {"booker": lambda: Greeter(tools)}, llm=model)
        lk.output.transcription = GatedOutput()
        await lk.start(agent)
        await rec.wait_idle()
        await lk.run(user_input="hello")
        assert [("user", "I need to change my booking")] == history_of(lk)[:1]
        assert "Hi, I'm the booking desk." in [i.text for i in accepted.state.items]
        await lk.aclose()
        await rec.wait_idle()


async def test_speech_held_while_the_line_was_down_is_said_after_restore() -> None:
    """Speech held before a resume is said once by the restored agent, heard as it plays."""
    tools = Tools()
    said = "Yes, your table for two is booked at eight."
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        s = await k.start(caller="+15551234567", agent="booker")
        s.user_said("is my table booked?")
        s.connection_lost("network switch")
        held = s.agent_started(said)
        await s.flush()
        resumed = await k.resume(s.id)
        model = ScriptedLLM([Reply([said])])
        lk, agent, rec = await restore(resumed, {"booker": lambda: Booker(tools)}, llm=model)
        lk.output.transcription = GatedOutput()
        replied = asyncio.Event()
        lk.on(
            "conversation_item_added",
            lambda ev: ev.item.role == "assistant" and replied.set(),
        )
        await lk.start(agent)
        async with asyncio.timeout(10):
            await replied.wait()
        await lk.aclose()
        await rec.wait_idle()
    assert 1 == len(model.seen)
    assert [] == list(resumed.state.outbox)
    spoken = {i.id: i.spoken for i in resumed.state.items if i.kind == "assistant"}
    assert "" == spoken[held]  # never heard where it was first said
    assert said == spoken[resumed.state.items[-1].id]
