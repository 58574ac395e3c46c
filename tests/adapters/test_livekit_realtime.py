"""LiveKit with ``livekit-plugins-openai`` ``realtime.RealtimeModel`` over the strict loopback
Realtime server: the guard, held results announced in the model's own conversation, the
heard text of a cut reply, and ``restore()`` rebuilding the server's conversation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from livekit.agents import AgentSession
from livekit.plugins import openai as lk_openai

from callstate import Keeper
from callstate.adapters.livekit import attach, restore
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, RealtimeServer, Say, ServerSession

from .test_livekit_harness import BOOKING, SECRET, Booker, GatedOutput, Tools, until

MOVED = {"booking_id": "B1", "time": "20:00", "moved": True}


def model_for(server: RealtimeServer) -> lk_openai.realtime.RealtimeModel:
    """The plugin's model, text out, dialling the loopback server."""
    url = server.url.replace("ws://", "http://")
    return lk_openai.realtime.RealtimeModel(base_url=url, api_key="sk-test", modalities=["text"])


def conversation(s: ServerSession) -> list[tuple[str, str]]:
    """The server's conversation as (kind, text) pairs."""
    out: list[tuple[str, str]] = []
    for item in s.items:
        if item["type"] == "message":
            parts = item.get("content") or []
            text = "".join(p.get("text") or p.get("transcript") or "" for p in parts)
            out.append((item["role"], text))
        elif item["type"] == "function_call":
            out.append(("function_call", item["call_id"]))
        else:
            out.append(("function_call_output", item["output"]))
    return out


class RtCall:
    """A keeper, a callstate session and an ``AgentSession`` on the realtime model."""

    def __init__(self, server: RealtimeServer) -> None:
        self.server = server
        self.tools = Tools()
        self.keeper = Keeper(
            "memory://", tools=self.tools.registry, secret=SECRET, clock=FakeClock()
        )
        self.model = model_for(server)
        self.output = GatedOutput()
        self.lk: AgentSession[Any] = AgentSession(llm=self.model, userdata={"party": 2})
        self.lk.output.transcription = self.output

    async def __aenter__(self) -> RtCall:
        await self.keeper.open()
        self.cs = await self.keeper.start(caller="+15551234567", agent="booker")
        self.recovery = attach(self.lk, self.cs, end_on_close=False)
        await self.lk.start(Booker(self.tools))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.output.release()
        for gate in self.tools.release.values():
            gate.set()
        self.server.resume()
        await self.lk.aclose()
        await self.recovery.wait_idle()
        await self.model.aclose()
        await self.keeper.close()


async def test_a_tool_call_of_the_realtime_model_runs_through_the_guard() -> None:
    """The model's function call runs once through the guard; its output reaches the server."""
    async with RealtimeServer() as server, RtCall(server) as call:
        call.tools.release["check_availability"].set()
        server.queue(Call("check_availability", '{"date":"mon"}', "c1"), Say("Eight is free"))
        await call.lk.run(user_input="is monday free")
        state = call.cs.state
        assert ["check_availability"] == call.tools.ran
        assert ("succeeded", {"date": "mon", "free": ["19:00", "20:00"]}) == (
            state.calls["c1"].status,
            state.calls["c1"].result,
        )
        assert [("user", "is monday free"), ("call", ""), ("assistant", "Eight is free")] == [
            (i.kind, i.text) for i in state.items
        ]
        [out] = [o for k, o in conversation(server.current) if k == "function_call_output"]
        assert {"status": "succeeded", "result": state.calls["c1"].result} == json.loads(out)
        assert [] == server.current.errors


async def test_a_write_held_at_a_barge_in_is_announced_in_the_servers_conversation() -> None:
    """Barge-in while a write runs: held; the caller's next turn puts the note on the server."""
    async with RealtimeServer() as server, RtCall(server) as call:
        server.queue(Call("move_booking", json.dumps(BOOKING), "c1"))
        run = call.lk.run(user_input="move my booking to eight")
        await until(lambda: call.tools.ran == ["move_booking"])
        done = call.lk.interrupt()
        await until(lambda: call.cs.state.calls["c1"].overtaken)
        call.tools.release["move_booking"].set()
        await done
        await run
        await until(lambda: "function_call_output" in dict(conversation(server.current)))
        c1 = call.cs.state.calls["c1"]
        assert ("succeeded", "held", MOVED) == (c1.status, c1.delivery, c1.result)
        held = dict(conversation(server.current))["function_call_output"]
        assert '"delivery":"held"' in held  # the model is told to wait, not to voice it
        responses = len(server.current.responses)
        server.queue(Say("Done: your table is at eight."))
        await call.lk.run(user_input="okay")
        assert "announced" == call.cs.state.calls["c1"].delivery
        talk = conversation(server.current)
        notes = [t for k, t in talk if k == "system" and "move_booking (call c1)" in t]
        assert 1 == len(notes)
        assert "announced" == json.loads(notes[0].split("how it ended: ", 1)[1])["delivery"]
        [out] = [t for k, t in talk if k == "function_call_output"]
        assert "announced" == json.loads(out)["delivery"]
        # the note is in before the reply is asked for
        assert responses + 1 == len(server.current.responses)
        assert ("assistant", "Done: your table is at eight.") == talk[-1]
        assert talk.index(("user", "okay")) < talk.index(("system", notes[0]))
        assert [] == server.current.errors


async def test_a_cut_reply_holds_on_the_server_only_what_the_caller_heard() -> None:
    """Cut mid-reply: the server's assistant item is the heard text, not the chunk under way."""
    async with RealtimeServer() as server, RtCall(server) as call:
        call.output.open_for = 1  # the caller hears the first chunk, then talks over it
        server.queue(Say("Sure, I am moving it now.", chunks=3))
        run = call.lk.run(user_input="move my booking")
        await until(lambda: call.output.waiting)
        await call.lk.interrupt()
        call.output.release()
        await run
        cut = next(i for i in call.cs.state.items if i.kind == "assistant")
        assert ("Sure, I", True) == (cut.text, cut.interrupted)
        await until(lambda: ("assistant", "Sure, I") in conversation(server.current))
        assert [("user", "move my booking"), ("assistant", "Sure, I")] == conversation(
            server.current
        )
        assert [] == server.current.errors


async def test_restore_rebuilds_the_realtime_conversation() -> None:
    """A resumed call: the new realtime session gets the whole conversation and the note."""
    async with RealtimeServer() as server, RtCall(server) as call:
        call.tools.release["check_availability"].set()
        server.queue(Call("check_availability", '{"date":"mon"}', "c1"), Say("Eight is free"))
        await call.lk.run(user_input="is monday free")
        await call.cs.flush()
        resumed = await call.keeper.resume(call.cs.id)
        model = model_for(server)
        tools = call.tools
        lk, agent, rec = await restore(resumed, {"booker": lambda: Booker(tools)}, llm=model)
        lk.output.transcription = GatedOutput()
        await lk.start(agent)
        fresh = await server.wait_sessions(2)
        server.queue(Say("Anything else?"))
        await lk.run(user_input="that is all")
        talk = conversation(fresh)
        assert ("user", "is monday free") == talk[0]
        assert ("function_call", "c1") == talk[1]
        assert "succeeded" == json.loads(talk[2][1])["status"]
        assert ("assistant", "Eight is free") == talk[3]
        assert any(k == "system" for k, _ in talk[4:-2])  # the resume note
        assert [("user", "that is all"), ("assistant", "Anything else?")] == talk[-2:]
        assert [] == fresh.errors
        assert [] == fresh.left_unanswered
        await lk.aclose()
        await rec.wait_idle()
        await model.aclose()


async def test_an_outcome_owed_on_a_quiet_line_reaches_the_realtime_conversation() -> None:
    """A call run outside LiveKit lands while nobody talks: call, output and note go in."""
    async with RealtimeServer() as server, RtCall(server) as call:
        server.queue(Say("Hello"))
        await call.lk.run(user_input="hi")
        server.queue(Say("Monday is free"))
        run = asyncio.ensure_future(
            call.cs.run_tool("check_availability", {"date": "mon"}, call_id="mon")
        )
        call.tools.release["check_availability"].set()
        await run
        await until(lambda: ("assistant", "Monday is free") in conversation(server.current))
        talk = conversation(server.current)
        kinds = [k for k, _ in talk]
        assert ["user", "assistant", "function_call", "function_call_output"] == kinds[:4]
        assert "succeeded" == json.loads(talk[3][1])["status"]
        [note] = [t for k, t in talk if k == "system"]
        assert "check_availability (call mon) has finished" in note
        assert ("assistant", "Monday is free") == talk[-1]
        assert [] == call.cs.owed_to_model()
        assert [] == server.current.errors
