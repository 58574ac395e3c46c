"""LiveKit with ``livekit-plugins-google`` ``realtime.RealtimeModel`` over the strict loopback
Gemini Live server: the guard, held results and cut replies told in the model's own
conversation (as marked user turns: Gemini takes no system turns and changes none), and
``restore()`` rebuilding the server's conversation with the resume note."""

from __future__ import annotations

import json
from typing import Any

from google.genai import types
from livekit.agents import AgentSession
from livekit.plugins import google as lk_google

from callstate import Keeper
from callstate.adapters.livekit import attach, restore
from callstate.testing import FakeClock
from callstate.testing.gemini_server import Call, GeminiServer, Say

from .test_livekit_harness import BOOKING, SECRET, Booker, GatedOutput, Tools, until

NOTE = "[note for the assistant, not said by the caller] "


def model_for(server: GeminiServer) -> lk_google.realtime.RealtimeModel:
    """The plugin's model, text out, dialling the loopback server."""
    return lk_google.realtime.RealtimeModel(
        api_key="test", http_options=server.http_options(), modalities=[types.Modality.TEXT]
    )


def notes(conversation: list[dict[str, Any]]) -> list[str]:
    """The callstate notes the server's conversation holds (marked user turns; Gemini's
    plugin joins consecutive user messages into one turn of several parts)."""
    return [note for t in conversation if t["role"] == "user" for note in t["text"].split(NOTE)[1:]]


class GeminiCall:
    """A keeper, a callstate session and an ``AgentSession`` on Gemini Live."""

    def __init__(self, server: GeminiServer) -> None:
        self.server = server
        self.tools = Tools()
        clock = FakeClock()
        self.keeper = Keeper("memory://", tools=self.tools.registry, secret=SECRET, clock=clock)
        self.model = model_for(server)
        self.output = GatedOutput()
        self.lk: AgentSession[Any] = AgentSession(llm=self.model)
        self.lk.output.transcription = self.output

    async def __aenter__(self) -> GeminiCall:
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
        await self.keeper.close()


async def test_a_gemini_tool_call_runs_through_the_guard() -> None:
    """Gemini's function call runs once through the guard; its toolResponse is the outcome."""
    async with GeminiServer() as server, GeminiCall(server) as call:
        call.tools.release["check_availability"].set()
        server.queue(Call("check_availability", {"date": "mon"}, "c1"), Say("Eight is free"))
        await call.lk.run(user_input="is monday free")
        await until(lambda: call.cs.state.items[-1].text == "Eight is free")
        assert ["check_availability"] == call.tools.ran
        assert "succeeded" == call.cs.state.calls["c1"].status
        [answer] = [t["text"] for t in server.current.conversation if t["text"].startswith("[c1]")]
        output = json.loads(json.loads(answer.removeprefix("[c1] "))["output"])
        assert {"status": "succeeded", "result": call.cs.state.calls["c1"].result} == output


async def test_a_write_held_at_a_barge_in_is_announced_to_gemini() -> None:
    """Barge-in while a write runs: held; the caller's next turn tells Gemini it was announced."""
    async with GeminiServer() as server, GeminiCall(server) as call:
        server.queue(Call("move_booking", BOOKING, "c1"))
        run = call.lk.run(user_input="move my booking to eight")
        await until(lambda: call.tools.ran == ["move_booking"])
        done = call.lk.interrupt()
        await until(lambda: call.cs.state.calls["c1"].overtaken)
        call.tools.release["move_booking"].set()
        await done
        await run
        await until(lambda: not server.current.pending)  # the held output went as toolResponse
        assert "held" == call.cs.state.calls["c1"].delivery
        assert [] == notes(server.current.conversation)
        server.queue(Say("Done: your table is at eight."))
        await call.lk.run(user_input="okay")
        await until(lambda: call.cs.state.items[-1].text == "Done: your table is at eight.")
        assert "announced" == call.cs.state.calls["c1"].delivery
        [note] = [n for n in notes(server.current.conversation) if "move_booking (call c1)" in n]
        assert "announced" == json.loads(note.split("how it ended: ", 1)[1])["delivery"]
        talk = [t["text"] for t in server.current.conversation]
        assert (
            talk.index("okay")
            < talk.index(NOTE + note)
            < talk.index("Done: your table is at eight.")
        )


async def test_a_cut_reply_is_told_to_gemini_as_heard() -> None:
    """Gemini keeps its whole turn: a note tells it what of the cut reply the caller heard."""
    async with GeminiServer() as server, GeminiCall(server) as call:
        call.output.open_for = 1
        server.queue(Say("Sure, I am moving it now.", chunks=3))
        run = call.lk.run(user_input="move my booking")
        await until(lambda: call.output.waiting)
        await call.lk.interrupt()
        call.output.release()
        await run
        cut = next(i for i in call.cs.state.items if i.kind == "assistant")
        assert ("Sure, I", True) == (cut.text, cut.interrupted)
        server.queue(Say("Shall I go on?"))
        await call.lk.run(user_input="wait")
        await until(lambda: call.cs.state.items[-1].text == "Shall I go on?")
        assert [
            'You were interrupted: the caller heard only "Sure, I" of your last reply.'
        ] == notes(server.current.conversation)


async def test_restore_rebuilds_the_gemini_conversation_with_the_resume_note() -> None:
    """A resumed call: the new Gemini session holds the conversation, the call and the note."""
    async with GeminiServer() as server, GeminiCall(server) as call:
        call.tools.release["check_availability"].set()
        server.queue(Call("check_availability", {"date": "mon"}, "c1"), Say("Eight is free"))
        await call.lk.run(user_input="is monday free")
        await until(lambda: call.cs.state.items[-1].text == "Eight is free")
        await call.cs.flush()
        resumed = await call.keeper.resume(call.cs.id)
        model = model_for(server)
        tools = call.tools
        lk, agent, rec = await restore(resumed, {"booker": lambda: Booker(tools)}, llm=model)
        lk.output.transcription = GatedOutput()
        await lk.start(agent)
        fresh = await server.wait_sessions(2)
        server.queue(Say("Anything else?"))
        await lk.run(user_input="book a table")
        await until(lambda: rec.session.state.items[-1].text == "Anything else?")
        talk = [(t["role"], t["text"]) for t in fresh.conversation]
        assert talk[0][1].startswith("is monday free")
        assert ("model", "Eight is free") in talk
        told = notes(fresh.conversation)
        # the earlier call and its outcome, and the resume note, each as a user turn
        assert 2 == len(told)
        assert told[0].startswith('check_availability (call c1) ran earlier with {"date":')
        assert '"status":"succeeded"' in told[0]
        assert "dropped" in told[1]
        assert ("user", "book a table") in talk[2:]
        assert ("model", "Anything else?") == talk[-1]
        await lk.aclose()
        await rec.wait_idle()


async def test_an_outcome_owed_on_a_quiet_line_is_told_to_gemini() -> None:
    """A call run outside LiveKit lands on a quiet line: Gemini gets it as a note and answers."""
    async with GeminiServer() as server, GeminiCall(server) as call:
        server.queue(Say("Hello"))
        await call.lk.run(user_input="hi")
        await until(lambda: call.cs.state.items[-1].text == "Hello")
        server.queue(Say("Monday is free"))
        call.tools.release["check_availability"].set()
        await call.cs.run_tool("check_availability", {"date": "mon"}, call_id="mon")
        await until(lambda: call.cs.state.items[-1].text == "Monday is free")
        told = notes(server.current.conversation)
        assert 2 == len(told)  # the call with its outcome, and that it has finished
        assert told[0].startswith('check_availability (call mon) ran earlier with {"date":')
        assert "check_availability (call mon) has finished" in told[1]
        assert 1 == len(server.sessions)  # no toolResponse for a call it never asked
        assert [] == call.cs.owed_to_model()
