"""A call hands off across frameworks: it starts on one path and a second keeper accepts
it on another. For each pair the package goes in, the target's context is seeded from it,
and the ledger is carried: the write the model asked for before the handoff ran once, on
the source, is not run again by the target, and its real result is in the target model's
context (not owed, not lost)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agents.realtime import RealtimeAgent
from google import genai
from livekit.agents import AgentSession
from openai import AsyncOpenAI

from callstate import Keeper, Session
from callstate.adapters import gemini_live, openai_agents, openai_realtime
from callstate.adapters.livekit import attach, restore
from callstate.adapters.pipecat import seed_context
from callstate.testing import FakeClock
from callstate.testing import gemini_server as gl
from callstate.testing import realtime_server as rt

from . import test_livekit_harness as lkh
from .pipecat_realtime_bot import RealtimeBot, openai_llm
from .test_gemini_live import CONFIG as GEMINI_CONFIG
from .test_gemini_live import MODEL as GEMINI_MODEL
from .test_gemini_live import turn_done
from .test_gemini_live import until as gemini_until
from .test_openai_agents import move_booking as sdk_move_booking
from .test_openai_realtime import CONFIG as OPENAI_CONFIG
from .test_openai_realtime import MODEL as OPENAI_MODEL
from .test_openai_realtime import TRANSCRIBED, of_type, outputs
from .test_openai_realtime import until as openai_until
from .test_pipecat_harness import Bot, Reply
from .test_pipecat_realtime_openai import caller_says, greeted

SECRET = b"handoff-matrix-secret-key-000001"
BOOKING = {"booking_id": "B1", "time": "20:00"}
MOVED = {"booking_id": "B1", "time": "20:00", "moved": True}
ASK = "Move B1 to eight please"


class Pair:
    """Two keepers on one store, each with its own tools: the source's and the target's."""

    def __init__(self) -> None:
        self.src, self.dst = lkh.Tools(), lkh.Tools()
        for tools in (self.src, self.dst):
            for gate in tools.release.values():
                gate.set()
        self.a: Keeper
        self.b: Keeper


@asynccontextmanager
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    p = Pair()
    url, clock = f"sqlite:///{tmp_path}/calls.db", FakeClock()
    async with (
        Keeper(url, tools=p.src.registry, secret=SECRET, clock=clock) as p.a,
        Keeper(url, tools=p.dst.registry, secret=SECRET, clock=clock) as p.b,
    ):
        yield p


async def hand_over(p: Pair, s: Session) -> tuple[Any, Session]:
    """The source offers the call to ``billing``; the other keeper accepts the bytes."""
    pkg = await s.handoff(to="billing")
    t = await p.b.accept(pkg.to_bytes())
    assert (s.id, "billing", []) == (t.id, t.state.agent, pkg.in_flight)
    return pkg, t


def carried(p: Pair, t: Session) -> None:
    """The write ran once, on the source; the target holds it succeeded and owes nothing."""
    c1 = t.state.calls["c1"]
    assert (["move_booking"], [], "succeeded", 1, MOVED) == (
        p.src.ran,
        p.dst.ran,
        c1.status,
        c1.attempts,
        c1.result,
    )
    assert [] == t.owed_to_model()


async def livekit_target(p: Pair, t: Session) -> list[dict[str, Any]]:
    """LiveKit cascaded on the accepted session: ``restore`` seeds the agent; the caller
    speaks once; returns the context the target model was given."""
    model = lkh.ScriptedLLM([lkh.Reply(["It is at eight now."])])
    lk, agent, rec = await restore(t, {"billing": lambda: lkh.Booker(p.dst)}, llm=model)
    lk.output.transcription = lkh.GatedOutput()
    try:
        await lk.start(agent)
        await lk.run(user_input="is it really moved?")
    finally:
        await lk.aclose()
        await rec.wait_idle()
    return model.seen[0]


def livekit_has_the_result(seen: list[dict[str, Any]]) -> None:
    """The call and its real output are in the LiveKit model's context, once each."""
    asked = [c["call_id"] for c in lkh.items_of(seen, "function_call")]
    answers = [
        json.loads(o["output"]) for o in lkh.items_of(seen, "function_call_output")
        if o["call_id"] == "c1"
    ]  # fmt: skip
    assert (["c1"], ["succeeded"], [MOVED]) == (
        asked,
        [a["status"] for a in answers],
        [a["result"] for a in answers],
    )


def realtime_has_the_result(server: rt.RealtimeServer, received: list[dict[str, Any]]) -> None:
    """The Realtime target was given the caller's ask, the call and its real output once,
    and the server refused nothing."""
    items = [e["item"] for e in received if e["type"] == "conversation.item.create"]
    asked = [i["call_id"] for i in items if i["type"] == "function_call"]
    answers = [json.loads(o["item"]["output"]) for o in outputs(received, "c1")]
    assert (["c1"], ["succeeded"], [MOVED]) == (
        asked,
        [a["status"] for a in answers],
        [a["result"] for a in answers],
    )
    assert ASK in json.dumps(items)
    assert [] == [x.errors for x in server.sessions if x.errors]


async def test_pipecat_realtime_openai_to_livekit_cascaded(tmp_path: Path) -> None:
    """Pipecat with OpenAIRealtimeLLMService moves the booking, then hands off: LiveKit's
    model gets the call and its result from the package; nothing runs again."""
    async with pair(tmp_path) as p, rt.RealtimeServer(session=TRANSCRIBED) as server:
        s = await p.a.start(caller="+15551234567", agent="booking")
        async with RealtimeBot(s, openai_llm(server.url)) as bot:
            await greeted(bot, server)
            server.queue(rt.Call("move_booking", json.dumps(BOOKING), call_id="c1"))
            server.queue(rt.Say("Done, it is at eight."))
            await caller_says(bot, server, ASK)
            await bot.until(lambda: "eight." in bot.heard())
        _, t = await hand_over(p, s)
        seen = await livekit_target(p, t)
        livekit_has_the_result(seen)
        carried(p, t)
        assert ASK in json.dumps(seen)


async def test_gemini_live_to_pipecat_cascaded(tmp_path: Path) -> None:
    """The raw Gemini Live adapter moves the booking, then hands off: a Pipecat pipeline
    seeded from the accepted session gives its model the call and its result."""
    async with pair(tmp_path) as p, gl.GeminiServer() as server:
        s = await p.a.start(caller="+15551234567", agent="booking")
        client = genai.Client(api_key="test", http_options=server.http_options())
        server.queue(gl.Call("move_booking", BOOKING, id="c1"), gl.Say("Done, it is at eight."))
        async with gemini_live.connect(client, s, model=GEMINI_MODEL, config=GEMINI_CONFIG) as live:
            await server.wait_sessions(1)
            await server.user_speaks(ASK)
            await gemini_until(live, turn_done)
        _, t = await hand_over(p, s)
        context = seed_context(None, t)
        async with Bot(t, [Reply("It is at eight now.")], context=context) as bot:
            await bot.user.say("is it really moved?")
            await bot.until(lambda: len(bot.llm.seen) == 1)
        seen = bot.llm.seen[0]
        asked = [c["id"] for m in seen for c in m.get("tool_calls") or []]
        answers = [json.loads(m["content"]) for m in seen if m.get("tool_call_id") == "c1"]
        assert (["c1"], ["succeeded"], [MOVED]) == (
            asked,
            [a["status"] for a in answers],
            [a["result"] for a in answers],
        )
        assert ASK in json.dumps(seen)
        carried(p, t)


async def test_openai_realtime_to_livekit_cascaded(tmp_path: Path) -> None:
    """The raw OpenAI Realtime adapter moves the booking, then hands off: LiveKit's model
    gets the call and its result from the package; nothing runs again."""
    async with (
        pair(tmp_path) as p,
        rt.RealtimeServer(session=TRANSCRIBED) as server,
        AsyncOpenAI(api_key="sk-test", websocket_base_url=server.url) as client,
    ):
        s = await p.a.start(caller="+15551234567", agent="booking")
        server.queue(rt.Call("move_booking", json.dumps(BOOKING), call_id="c1"))
        server.queue(rt.Say("Done, it is at eight."))
        async with openai_realtime.connect(
            client, s, model=OPENAI_MODEL, config=OPENAI_CONFIG
        ) as conn:
            await server.user_speaks(ASK)
            await openai_until(conn, of_type("response.output_audio_transcript.done"))
        _, t = await hand_over(p, s)
        seen = await livekit_target(p, t)
        livekit_has_the_result(seen)
        carried(p, t)
        assert ASK in json.dumps(seen)


async def test_gemini_live_to_pipecat_with_the_write_still_running(tmp_path: Path) -> None:
    """The handoff is offered while the Gemini call's write runs: the package carries it in
    flight, it finishes on the source, and its result lands in the Pipecat context once,
    without the target running it."""
    async with pair(tmp_path) as p, gl.GeminiServer() as server:
        p.src.release["move_booking"].clear()
        s = await p.a.start(caller="+15551234567", agent="booking")
        client = genai.Client(api_key="test", http_options=server.http_options())
        server.queue(gl.Call("move_booking", BOOKING, id="c1"), gl.Say("Done, it is at eight."))
        async with gemini_live.connect(client, s, model=GEMINI_MODEL, config=GEMINI_CONFIG) as live:
            await server.wait_sessions(1)
            await server.user_speaks(ASK)
            await gemini_until(live, lambda m: m.tool_call is not None)
            await lkh.until(lambda: ["move_booking"] == p.src.ran)
            pkg = await s.handoff(to="billing")
            t = await p.b.accept(pkg.to_bytes())
            assert ["c1"] == pkg.in_flight
            context = seed_context(None, t)
            async with Bot(t, [Reply("It is at eight now.")], context=context) as bot:
                p.src.release["move_booking"].set()
                async with asyncio.timeout(10):  # the source's run ends; its result is stored
                    while "succeeded" != t.state.calls["c1"].status:
                        await p.b.collect_late_results()
                        await asyncio.sleep(0.005)
                await bot.until(lambda: [] == t.owed_to_model())
                await bot.user.say("is it really moved?")
                await bot.until(lambda: len(bot.llm.seen) == 1)
        seen = bot.llm.seen[0]
        notes = [
            m["content"] for m in seen if m["role"] == "system" and "(call c1)" in m["content"]
        ]
        finished = [n for n in notes if "has finished" in n]
        assert (1, True) == (len(finished), '"moved":true' in finished[0])
        assert "announced" == t.state.calls["c1"].delivery  # told to the caller, once
        carried(p, t)


async def test_pipecat_cascaded_to_openai_realtime(tmp_path: Path) -> None:
    """A cascaded Pipecat call moves the booking, then hands off to the raw OpenAI Realtime
    adapter: the new Realtime session is given the call and its real output before the
    model speaks, and the model goes on without running it again."""
    async with (
        pair(tmp_path) as p,
        rt.RealtimeServer(session=TRANSCRIBED) as server,
        AsyncOpenAI(api_key="sk-test", websocket_base_url=server.url) as client,
    ):
        s = await p.a.start(caller="+15551234567", agent="booking")
        replies = [Reply("One moment.", calls=[("c1", "move_booking", BOOKING)]), Reply("Done.")]
        async with Bot(s, replies) as bot:
            await bot.user.say(ASK)
            await bot.until(lambda: len(bot.llm.seen) == 2)
        _, t = await hand_over(p, s)
        server.queue(rt.Say("Yes, it is at eight."))
        async with openai_realtime.connect(
            client, t, model=OPENAI_MODEL, config=OPENAI_CONFIG
        ) as conn:
            await server.user_speaks("is it really moved?")
            await openai_until(conn, of_type("response.output_audio_transcript.done"))
        realtime_has_the_result(server, server.received)
        carried(p, t)


async def test_openai_agents_sdk_to_openai_realtime(tmp_path: Path) -> None:
    """An Agents SDK call moves the booking through the guard, then hands off to the raw
    OpenAI Realtime adapter: the new Realtime session is given the call and its real
    output, and the model goes on without running it again."""
    async with pair(tmp_path) as p, rt.RealtimeServer(session=TRANSCRIBED) as server:
        s = await p.a.start(caller="+15551234567", agent="booking")
        agent = RealtimeAgent(name="booking", tools=[sdk_move_booking])
        server.queue(rt.Call("move_booking", json.dumps(BOOKING), call_id="c1"), rt.Say("Done."))
        model_config = {"url": f"{server.url}/realtime?model=gpt-realtime", "api_key": "sk-test"}
        async with openai_agents.record(agent, s, model_config=model_config) as call:
            first = server.current
            await server.wait_for(
                lambda: any(e["type"] == "session.update" for e in first.received)
            )
            await server.user_speaks(ASK)
            await server.wait_for(lambda: first.active is None and bool(first.audio_ms))
        _, t = await hand_over(p, call.session)
        server.queue(rt.Say("Yes, it is at eight."))
        async with (
            AsyncOpenAI(api_key="sk-test", websocket_base_url=server.url) as client,
            openai_realtime.connect(client, t, model=OPENAI_MODEL, config=OPENAI_CONFIG) as conn,
        ):
            await server.user_speaks("is it really moved?")
            await openai_until(conn, of_type("response.output_audio_transcript.done"))
        realtime_has_the_result(server, server.sessions[1].received)
        carried(p, t)


async def test_livekit_cascaded_to_gemini_live(tmp_path: Path) -> None:
    """A LiveKit call moves the booking, then hands off to the raw Gemini Live adapter: the
    new Live session is given the call and its real result as it replays the conversation
    (no handle to resume from), and the model goes on without running it again."""
    async with pair(tmp_path) as p, gl.GeminiServer() as server:
        s = await p.a.start(caller="+15551234567", agent="booking")
        model = lkh.ScriptedLLM(
            [lkh.Reply(["One moment."], [("c1", "move_booking", BOOKING)]), lkh.Reply(["Done."])]
        )
        lk: AgentSession[Any] = AgentSession(llm=model)
        lk.output.transcription = lkh.GatedOutput()
        rec = attach(lk, s, end_on_close=False)  # the call goes on elsewhere
        try:
            await lk.start(lkh.Booker(p.src))
            await lk.run(user_input=ASK)
        finally:
            await lk.aclose()
            await rec.wait_idle()
        _, t = await hand_over(p, s)
        client = genai.Client(api_key="test", http_options=server.http_options())
        server.queue(gl.Say("Yes, it is at eight."))
        async with gemini_live.connect(client, t, model=GEMINI_MODEL, config=GEMINI_CONFIG) as live:
            await server.wait_sessions(1)
            await server.user_speaks("is it really moved?")
            await gemini_until(live, turn_done)
        said = "\n".join(turn["text"] for turn in server.current.conversation)
        assert 1 == said.count("(result of call c1:")
        assert '"moved":true' in said.split("(result of call c1:", 1)[1]
        assert (ASK in said, []) == (True, [x.refused for x in server.sessions if x.refused])
        carried(p, t)
