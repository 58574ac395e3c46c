"""A LiveKit booking agent whose tool result survives a barge-in and a worker restart.

Runs offline: a scripted ``llm.LLM`` stands in for the model and the session is
text-only. In a worker, pass your real ``llm=``/``stt=``/``tts=``/``vad=`` and
``room=ctx.room`` instead.

    python examples/livekit_agent.py
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

import callstate
from callstate.adapters.livekit import attach, guarded_tools, restore

tools = callstate.ToolRegistry()
SECRET = b"use-32-random-bytes-in-production"  # signs tokens, encrypts caller ids
started, done = asyncio.Event(), asyncio.Event()


@tools.tool(effect="write", idempotent=True)
async def move_booking(booking_id: str, time: str, *, ctx: callstate.ToolContext) -> dict[str, str]:
    """Move a booking to a new time."""
    started.set()
    await done.wait()  # a slow booking system: the caller talks over it
    return {"booking_id": booking_id, "time": time, "key": ctx.idempotency_key[:8]}


class Script(llm.LLM):
    """Stands in for the model: each turn plays the next (text, tool calls) pair."""

    def __init__(self, *turns: tuple[str, list[tuple[str, str, dict[str, str]]]]) -> None:
        super().__init__()
        self.turns = list(turns)

    def chat(self, *, chat_ctx: llm.ChatContext, tools: Any = None, **_: Any) -> llm.LLMStream:
        text, calls = self.turns.pop(0) if self.turns else ("Okay.", [])
        owner = self

        class Stream(llm.LLMStream):
            async def _run(self) -> None:
                if text:
                    delta = llm.ChoiceDelta(role="assistant", content=text)
                    self._event_ch.send_nowait(llm.ChatChunk(id="r", delta=delta))
                for call_id, name, args in calls:
                    fn = llm.FunctionToolCall(
                        name=name, arguments=json.dumps(args), call_id=call_id
                    )
                    delta = llm.ChoiceDelta(role="assistant", tool_calls=[fn])
                    self._event_ch.send_nowait(llm.ChatChunk(id="r", delta=delta))

        return Stream(
            owner, chat_ctx=chat_ctx, tools=tools or [], conn_options=DEFAULT_API_CONNECT_OPTIONS
        )


def booker() -> Agent:
    return Agent(
        instructions="You move restaurant bookings.", tools=guarded_tools(tools), id="booker"
    )


async def main() -> None:
    async with callstate.Keeper("memory://", secret=SECRET, tools=tools) as keeper:
        session = await keeper.start(caller="+15551234567", agent="booker")
        model = Script(
            ("One moment.", [("c1", "move_booking", {"booking_id": "B1", "time": "20:00"})]),
            ("By the way, your booking is now at eight.", []),
        )
        lk: AgentSession[Any] = AgentSession(llm=model)
        attach(lk, session, agents={"booker": booker})
        await lk.start(booker())
        turn = lk.run(user_input="Please move booking B1 to eight.")
        await started.wait()
        lk.interrupt()  # the caller talks over the agent while the booking moves
        done.set()
        await turn
        print("held:", [c.name for c in session.state.owed])
        await lk.run(user_input="Sorry, go on.")  # the caller's turn ends: it is announced
        print("announced:", session.state.calls["c1"].delivery)
        await lk.aclose()

        # a new worker picks the call up: same history, same agent, with the resume note
        resumed = await keeper.resume(session.id)
        lk2, agent, _ = await restore(
            resumed, {"booker": booker}, llm=Script(("Anything else?", []))
        )
        await lk2.start(agent)
        await lk2.run(user_input="Thanks!")
        for message in resumed.context():
            print(message["role"], "|", message.get("content") or message.get("tool_calls"))
        await lk2.aclose()


if __name__ == "__main__":
    asyncio.run(main())
