"""A real LiveKit ``AgentSession`` run offline: a scripted LLM, a gated text output.

No room and no keys: the session runs text-only (``session.run(user_input=...)``), its
transcription output is a real ``io.TextOutput`` that releases text when the test says
(what it released is what the caller heard), and the LLM is an ``llm.LLM`` subclass that
plays scripted replies and keeps the context of every request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.llm import ChatChunk, ChoiceDelta, FunctionToolCall
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.agents.voice import io
from livekit.agents.voice.events import UserInputTranscribedEvent

from callstate import Keeper, ToolRegistry
from callstate.adapters.livekit import attach, guarded_tools
from callstate.testing import FakeClock

SECRET = b"livekit-adapter-test-secret-0001"
BOOKING = {"booking_id": "B1", "time": "20:00"}


@dataclass
class Reply:
    """One scripted model response: text chunks, then tool calls ``(call_id, name, args)``."""

    chunks: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


class _Stream(llm.LLMStream):
    def __init__(self, owner: ScriptedLLM, reply: Reply, **kw: Any) -> None:
        super().__init__(owner, **kw)
        self._reply = reply

    async def _run(self) -> None:
        for text in self._reply.chunks:
            self._event_ch.send_nowait(
                ChatChunk(id="r", delta=ChoiceDelta(role="assistant", content=text))
            )
        for call_id, name, args in self._reply.calls:
            call = FunctionToolCall(name=name, arguments=json.dumps(args), call_id=call_id)
            self._event_ch.send_nowait(
                ChatChunk(id="r", delta=ChoiceDelta(role="assistant", tool_calls=[call]))
            )


class ScriptedLLM(llm.LLM):
    """Plays ``replies`` in order (then a plain "Okay."), keeping every request's context."""

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__()
        self.replies = list(replies)
        self.seen: list[list[dict[str, Any]]] = []

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        self.seen.append(chat_ctx.to_dict(exclude_timestamp=True)["items"])
        reply = self.replies.pop(0) if self.replies else Reply(["Okay."])
        return _Stream(self, reply, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class GatedOutput(io.TextOutput):
    """The text output: passes ``open_for`` chunks, then holds the next until ``release``."""

    def __init__(self) -> None:
        super().__init__(label="gated", next_in_chain=None)
        self.released: list[str] = []
        self.open_for: int | None = None  # None: everything passes
        self.waiting = False
        self._gate = asyncio.Event()

    async def capture_text(self, text: str) -> None:
        if self.open_for is not None and len(self.released) >= self.open_for:
            self.waiting = True
            self._gate.clear()
            await self._gate.wait()
            self.waiting = False
        self.released.append(text)

    def flush(self) -> None:
        pass

    def release(self) -> None:
        self.open_for = None
        self._gate.set()


class Tools:
    """A registry whose tools wait for the test to let them finish."""

    def __init__(self) -> None:
        self.registry = ToolRegistry()
        self.ran: list[str] = []
        self.release = {"move_booking": asyncio.Event(), "check_availability": asyncio.Event()}
        reg = self.registry

        @reg.tool(effect="write", idempotent=True)
        async def move_booking(booking_id: str, time: str) -> dict[str, Any]:
            """Move a booking to a new time."""
            self.ran.append("move_booking")
            await self.release["move_booking"].wait()
            return {"booking_id": booking_id, "time": time, "moved": True}

        @reg.tool(effect="read")
        async def check_availability(date: str) -> dict[str, Any]:
            """Check which times are free on a date."""
            self.ran.append("check_availability")
            await self.release["check_availability"].wait()
            return {"date": date, "free": ["19:00", "20:00"]}


class Booker(Agent):
    """The agent under test: callstate's tools, run through the guard."""

    def __init__(self, tools: Tools, *, extra: list[Any] | None = None) -> None:
        super().__init__(
            instructions="You book tables.",
            tools=[*guarded_tools(tools.registry), *(extra or [])],
        )


async def until(check: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``check`` (the session works in its own tasks) until it holds."""
    async with asyncio.timeout(within):
        while True:  # LiveKit's tasks signal nothing we could wait on
            if check():
                return
            await asyncio.sleep(0.002)


def items_of(seen: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [i for i in seen if i["type"] == kind]


def system_texts(seen: list[dict[str, Any]]) -> list[str]:
    return [
        "".join(c for c in i["content"] if isinstance(c, str))
        for i in seen
        if i["type"] == "message" and i["role"] == "system"
    ]


class Call:
    """A keeper, a callstate session and an attached ``AgentSession``."""

    def __init__(
        self,
        replies: list[Reply],
        *,
        store: str = "memory://",
        agent: Callable[[Tools], Agent] | None = None,
        secret: bytes | None = SECRET,
    ) -> None:
        self.tools = Tools()
        self.agent = agent if agent is not None else Booker
        self.clock = FakeClock()
        self.keeper = Keeper(store, tools=self.tools.registry, secret=secret, clock=self.clock)
        self.llm = ScriptedLLM(replies)
        self.output = GatedOutput()
        self.lk: AgentSession[Any] = AgentSession(llm=self.llm, userdata={"party": 2})
        self.lk.output.transcription = self.output

    async def __aenter__(self) -> Call:
        await self.keeper.open()
        caller = "+15551234567" if self.keeper.secrets else None  # sealed at rest
        self.cs = await self.keeper.start(caller=caller, agent="booker")
        self.recovery = attach(self.lk, self.cs)
        await self.lk.start(self.agent(self.tools))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.output.release()  # a failed test may leave the output or a tool waiting
        for gate in self.tools.release.values():
            gate.set()
        await self.lk.aclose()
        await self.recovery.wait_idle()
        await self.keeper.close()


async def test_a_tool_call_runs_through_the_guard_and_is_recorded() -> None:
    """A model's tool call runs through the guard; turns, speech and result are recorded."""
    replies = [
        Reply(["Let me check."], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Seven or eight are free."]),
    ]
    async with Call(replies) as call:
        call.tools.release["check_availability"].set()
        await call.lk.run(user_input="is monday free")
        state = call.cs.state
        assert ["check_availability"] == call.tools.ran
        assert "succeeded" == state.calls["c1"].status
        assert {"date": "mon", "free": ["19:00", "20:00"]} == state.calls["c1"].result
        assert [
            ("user", "is monday free"),
            ("assistant", "Let me check."),
            ("call", ""),
            ("assistant", "Seven or eight are free."),
        ] == [(i.kind, i.text) for i in state.items]
        outputs = items_of(call.llm.seen[1], "function_call_output")
        assert ["c1"] == [o["call_id"] for o in outputs]
        assert {"status": "succeeded", "result": state.calls["c1"].result} == json.loads(
            outputs[0]["output"]
        )
    assert "ended" == call.cs.state.status


async def test_a_repeated_call_id_is_not_run_twice() -> None:
    """The model repeating a call id gets the recorded outcome; the tool runs once."""
    replies = [
        Reply([], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Free."]),
        Reply([], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Still free."]),
    ]
    async with Call(replies) as call:
        call.tools.release["check_availability"].set()
        await call.lk.run(user_input="is monday free")
        await call.lk.run(user_input="sure?")
        assert ["check_availability"] == call.tools.ran
        outputs = items_of(call.llm.seen[3], "function_call_output")
        assert 2 == len(outputs)
        assert outputs[0]["output"] == outputs[1]["output"]


async def test_interim_transcripts_and_userdata_are_recorded() -> None:
    """Interim transcripts become partials; LiveKit userdata changes reach the state."""
    async with Call([Reply(["Sure."])]) as call:
        # what the STT pipeline emits for an interim transcript
        event = UserInputTranscribedEvent(transcript="I'd like", is_final=False)
        call.lk.emit("user_input_transcribed", event)
        assert "I'd like" == call.cs.state.partial
        call.lk.userdata["party"] = 4
        await call.lk.run(user_input="a table for four")
        assert {"party": 4} == call.cs.state.userdata


async def test_a_failed_call_reaches_livekit_as_an_error_output() -> None:
    """Arguments that do not fit end the call failed; LiveKit's output is marked an error."""
    replies = [Reply([], [("c1", "check_availability", {"day": "mon"})]), Reply(["Sorry."])]
    async with Call(replies) as call:
        await call.lk.run(user_input="is monday free")
        assert "failed" == call.cs.state.calls["c1"].status
        assert [] == call.tools.ran
        [out] = items_of(call.llm.seen[1], "function_call_output")
        assert True is out["is_error"]
        assert '"status":"failed"' in out["output"]


async def test_attach_after_start_records_the_next_turns() -> None:
    """Attached to a session already running, the recovery wraps its agent and records."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        lk: AgentSession[Any] = AgentSession(llm=ScriptedLLM([Reply(["Hello."])]))
        await lk.start(Booker(tools))
        s = await k.start(agent="booker")
        rec = attach(lk, s)
        await lk.run(user_input="hi")
        assert [("user", "hi"), ("assistant", "Hello.")] == [
            (i.kind, i.text) for i in s.state.items
        ]
        await lk.aclose()
        await rec.wait_idle()
        assert "ended" == s.state.status
