"""A new ``AgentSession`` continues a call: after a crash, or from another framework's package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession

from callstate import Keeper, RecoveryPlan
from callstate.adapters.livekit import (
    attach,
    chat_context,
    context_messages,
    guarded_tools,
    restore,
)
from callstate.errors import ConfigError
from callstate.testing import FakeClock

from .test_livekit_handoff import Billing, transfer
from .test_livekit_harness import (
    SECRET,
    Booker,
    GatedOutput,
    Reply,
    ScriptedLLM,
    Tools,
    items_of,
    system_texts,
)


def user_texts(seen: list[dict[str, Any]]) -> list[str]:
    return ["".join(i["content"]) for i in items_of(seen, "message") if i["role"] == "user"]


async def test_crash_and_restore_into_a_new_agent_session(tmp_path: Path) -> None:
    """History, userdata and the current agent come back in a new session, with the note."""
    tools = Tools()
    tools.release["check_availability"].set()
    agents = {
        "booker": lambda: Booker(tools, extra=[transfer(tools)]),
        "billing": lambda: Billing(tools),
    }
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    first = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await first.open()
    s = await first.start(caller="+15551234567", agent="booker")
    llm1 = ScriptedLLM(
        [
            Reply(["Let me check."], [("c1", "check_availability", {"date": "mon"})]),
            Reply(["Eight is free."]),
            Reply([], [("h1", "transfer_to_billing", {})]),
        ]
    )
    lk1: AgentSession[Any] = AgentSession(llm=llm1, userdata={"party": 2})
    lk1.output.transcription = GatedOutput()
    rec1 = attach(lk1, s, agents=agents)
    await lk1.start(agents["booker"]())
    await lk1.run(user_input="is monday free")
    lk1.userdata["plan"] = "gold"
    await lk1.run(user_input="and my bill?")
    await rec1.wait_idle()
    s_billing = rec1.session
    await s_billing.flush()  # then the worker dies: nothing more reaches the store

    clock.advance(20)
    second = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await second.open()
    s2 = await second.resume(s.id)  # the dead worker is fenced from here on
    assert isinstance(s2.recovery, RecoveryPlan)
    llm2 = ScriptedLLM([Reply(["As I was saying, you owe nothing."])])
    lk2, agent, rec2 = await restore(s2, agents, llm=llm2)
    lk2.output.transcription = GatedOutput()
    await lk2.start(agent)
    await lk2.run(user_input="hello? are you there?")

    assert "billing" == lk2.current_agent.id
    assert isinstance(lk2.current_agent, Billing)
    assert {"party": 2, "plan": "gold"} == lk2.userdata
    seen = llm2.seen[0]
    assert ["is monday free", "and my bill?", "hello? are you there?"] == user_texts(seen)
    assert ["c1", "h1"] == [i["call_id"] for i in items_of(seen, "function_call")]
    assert ["c1", "h1"] == [i["call_id"] for i in items_of(seen, "function_call_output")]
    assert s2.recovery.resume_note in system_texts(seen)
    assert s2.recovery.resume_note.startswith("The line dropped for 20 s")
    assert ("user", "hello? are you there?") == (s2.state.items[-2].kind, s2.state.items[-2].text)
    assert "As I was saying, you owe nothing." == s2.state.items[-1].text
    assert s2.state.epoch > s_billing.state.epoch

    await lk2.aclose()
    await rec2.wait_idle()
    await lk1.aclose()  # the old worker's goodbye is refused: it was fenced
    await rec1.wait_idle()
    assert rec1.errors
    await second.close()
    await first.close()


async def test_restore_without_a_factory_for_the_agent_is_refused() -> None:
    """A session whose agent has no registered factory gets a ConfigError naming it."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        s = await k.start(agent="concierge")
        with pytest.raises(ConfigError, match="'concierge'"):
            await restore(s, {"booker": lambda: Booker(tools)})


async def test_a_pipecat_package_seeds_a_livekit_agent() -> None:
    """A call recorded through a real Pipecat pipeline continues on a LiveKit agent."""
    from .test_pipecat_harness import Bot
    from .test_pipecat_harness import Reply as PipecatReply
    from .test_pipecat_tools import BOOKING
    from .test_pipecat_tools import Tools as PipecatTools

    tools = PipecatTools()
    tools.release["move_booking"].set()
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        s = await k.start(agent="triage")
        reply = PipecatReply("Moving it now.", calls=[("c1", "move_booking", BOOKING)])
        async with Bot(s, [reply, PipecatReply("Done.")]) as bot:
            await bot.user.say("move my booking to eight")
            await bot.until(lambda: len(bot.llm.seen) == 2)
            await bot.until(lambda: s.state.current_utterance is None)
        pkg = await s.handoff(to="concierge", reason="a question about the menu")
        s2 = await k.accept(pkg.to_bytes())

        def concierge() -> Agent:
            return Agent(
                instructions="You answer questions.",
                tools=guarded_tools(tools.registry, ["cancel_booking"]),
                id="concierge",
            )

        expected = context_messages(pkg)
        assert expected[-1]["content"].startswith("This conversation was handed over to you")
        assert len(chat_context(pkg).items) >= len(expected)
        llm = ScriptedLLM([Reply(["Happy to help."])])
        lk, agent, rec = await restore(s2, {"concierge": concierge}, llm=llm)
        lk.output.transcription = GatedOutput()
        await lk.start(agent)
        await lk.run(user_input="is there a vegan menu?")
        seen = llm.seen[0]
        assert ["move my booking to eight", "is there a vegan menu?"] == user_texts(seen)
        assert ["c1"] == [i["call_id"] for i in items_of(seen, "function_call")]
        [out] = items_of(seen, "function_call_output")
        assert '"status":"succeeded"' in out["output"]
        assert "Happy to help." == s2.state.items[-1].text
        await lk.aclose()
        await rec.wait_idle()


async def test_an_openai_realtime_package_seeds_a_livekit_agent() -> None:
    """A call recorded through the OpenAI Realtime adapter continues on a LiveKit agent."""
    from openai import AsyncOpenAI

    from callstate.adapters.openai_realtime import connect
    from callstate.testing.realtime_server import Call as RealtimeCall
    from callstate.testing.realtime_server import RealtimeServer, Say

    tools = Tools()
    tools.release["move_booking"].set()
    config = {
        "type": "realtime",
        "instructions": "You move restaurant bookings.",
        "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}},
        "tools": [{"type": "function", "name": "move_booking", "parameters": {"type": "object"}}],
    }
    async with (
        RealtimeServer(session={"audio": config["audio"]}) as server,
        Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k,
        AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url) as client,
    ):
        s = await k.start(agent="realtime")
        server.queue(RealtimeCall("move_booking", '{"booking_id": "B1", "time": "20:00"}'))
        server.queue(Say("Done: your booking is now at eight."))
        async with connect(client, s, model="gpt-realtime", config=config) as conn:
            await server.user_speaks("Please move booking B1 to eight tonight.")
            async for event in conn:
                if event.type == "response.output_audio_transcript.done":
                    break
        pkg = await s.handoff(to="booker", reason="a follow-up")
        s2 = await k.accept(pkg.to_bytes())
        llm = ScriptedLLM([Reply(["Anything else about your booking?"])])
        lk, agent, rec = await restore(s2, {"booker": lambda: Booker(tools)}, llm=llm)
        lk.output.transcription = GatedOutput()
        await lk.start(agent)
        await lk.run(user_input="thanks")
        seen = llm.seen[0]
        assert ["Please move booking B1 to eight tonight.", "thanks"] == user_texts(seen)
        [call] = items_of(seen, "function_call")
        assert "move_booking" == call["name"]
        [out] = items_of(seen, "function_call_output")
        assert '"status":"succeeded"' in out["output"]
        assert "Done: your booking is now at eight." in [
            "".join(i["content"]) for i in items_of(seen, "message") if i["role"] == "assistant"
        ]
        await lk.aclose()
        await rec.wait_idle()
