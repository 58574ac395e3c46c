"""LiveKit adapter benchmark: what recording an ``AgentSession`` costs, and a restore.

A real ``AgentSession`` runs text-only with a scripted ``llm.LLM`` (no room, no
network), so the time is LiveKit's own turn machinery plus what the adapter adds::

    python bench/bench_livekit.py
    python bench/bench_livekit.py --turns 200 --history 400

``turn_plain_p50_ms`` is one ``session.run(user_input=...)`` (user turn, one model
reply) with nothing attached; ``turn_attached_p50_ms`` the same with ``attach``
(memory store); ``tool_turn_attached_p50_ms`` a turn whose reply calls a guarded tool
and then answers. ``restore_ms`` is ``restore(...)`` of a resumed session of
``--history`` conversation items (build the agent, convert and seed the context, a new
``AgentSession``), median of 20. Every metric is printed as ``name value``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

import callstate
from callstate.adapters.livekit import attach, guarded_tools, restore
from callstate.testing import FakeClock

tools = callstate.ToolRegistry()


@tools.tool(effect="read")
async def check_availability(date: str) -> dict[str, Any]:
    """Check which times are free on a date."""
    return {"date": date, "free": ["19:00", "20:00"]}


class Script(llm.LLM):
    """Answers every request; asks for a tool call when the last user turn says "check"."""

    def chat(self, *, chat_ctx: llm.ChatContext, tools: Any = None, **_: Any) -> llm.LLMStream:
        last = chat_ctx.items[-1] if chat_ctx.items else None
        wants_tool = isinstance(last, llm.ChatMessage) and "check" in (last.text_content or "")
        owner = self

        class Stream(llm.LLMStream):
            async def _run(self) -> None:
                text = "Let me look." if wants_tool else "Sure, that works for us."
                delta = llm.ChoiceDelta(role="assistant", content=text)
                self._event_ch.send_nowait(llm.ChatChunk(id="r", delta=delta))
                if wants_tool:
                    call = llm.FunctionToolCall(
                        name="check_availability",
                        arguments=json.dumps({"date": "mon"}),
                        call_id=f"c{time.perf_counter_ns()}",
                    )
                    delta = llm.ChoiceDelta(role="assistant", tool_calls=[call])
                    self._event_ch.send_nowait(llm.ChatChunk(id="r", delta=delta))

        return Stream(
            owner, chat_ctx=chat_ctx, tools=tools or [], conn_options=DEFAULT_API_CONNECT_OPTIONS
        )


def agent() -> Agent:
    return Agent(instructions="You book tables.", tools=guarded_tools(tools), id="booker")


async def turns(keeper: callstate.Keeper, n: int, *, attached: bool, say: str) -> list[float]:
    lk: AgentSession[Any] = AgentSession(llm=Script())
    if attached:
        attach(lk, await keeper.start(agent="booker"), end_on_close=False)
    await lk.start(agent())
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await lk.run(user_input=say)
        out.append((time.perf_counter() - t0) * 1000)
    await lk.aclose()
    return out


async def restore_ms(keeper: callstate.Keeper, history: int) -> float:
    s = await keeper.start(agent="booker")
    for i in range(history // 2):
        s.user_said(f"turn {i}: a table for four at eight, please")
        s.agent_finished(s.agent_started(f"reply {i}: sure, booked for four at eight"))
    await s.close()
    resumed = await keeper.resume(s.id)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        await restore(resumed, {"booker": agent}, llm=Script(), end_on_close=False)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--history", type=int, default=200)
    args = parser.parse_args(argv)
    async with callstate.Keeper("memory://", tools=tools, clock=FakeClock()) as keeper:
        plain = await turns(keeper, args.turns, attached=False, say="a table for four")
        attached = await turns(keeper, args.turns, attached=True, say="a table for four")
        tool = await turns(keeper, args.turns, attached=True, say="check monday")
        restored = await restore_ms(keeper, args.history)
    print(f"turn_plain_p50_ms {statistics.median(plain):.3f}")
    print(f"turn_attached_p50_ms {statistics.median(attached):.3f}")
    print(f"tool_turn_attached_p50_ms {statistics.median(tool):.3f}")
    print(f"restore_ms {restored:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
