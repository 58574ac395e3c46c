"""An OpenAI Agents SDK realtime call recorded by callstate: a barge-in, a handoff, a drop.

The SDK's own ``RealtimeSession`` runs a ``booking`` agent that can hand off to
``billing``; callstate records the call, runs the tool once through its guard, cuts the
interrupted answer at the played position, turns the SDK's handoff into a callstate
handoff (epoch+1, the target carries on without a greeting) and reopens a dropped
connection with the conversation replayed. Runs offline against callstate's loopback
Realtime server; drop the ``url`` and set a real ``api_key`` for a real call.

    python examples/openai_agents_realtime.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimePlaybackTracker

import callstate
from callstate.adapters.openai_agents import RecordedCall, record
from callstate.testing.realtime_server import Call, RealtimeServer, Say

tools = callstate.ToolRegistry()
SECRET = b"use-32-random-bytes-in-production"  # signs handoff packages and tokens
moves: list[str] = []  # what the booking system really did


@tools.tool(effect="write", idempotent=True)
async def move_booking(booking_id: str, time: str) -> dict[str, object]:
    moves.append(f"{booking_id} -> {time}")
    return {"booking_id": booking_id, "time": time, "moved": True}


@function_tool(name_override="move_booking")
async def move_booking_tool(booking_id: str, time: str) -> str:
    """Move a booking to a new time."""
    raise NotImplementedError  # callstate runs the registered tool instead


billing = RealtimeAgent(name="billing", instructions="You answer questions about bills.")
booking = RealtimeAgent(
    name="booking",
    instructions="You move restaurant bookings.",
    tools=[move_booking_tool],
    handoffs=[billing],
)


async def read(call: RecordedCall, seen: list[str]) -> None:
    """Consume the SDK's events, as an app playing the audio would."""
    async for event in call:
        if event.type == "handoff":
            seen.append(f"handoff: {event.from_agent.name} -> {event.to_agent.name}")


async def answer_heard(server: RealtimeServer, tracker: RealtimePlaybackTracker) -> None:
    """Wait for the agent's answer to finish and tell the SDK the caller heard all of it."""
    await server.wait_for(lambda: server.current.active is None and bool(server.current.audio_ms))
    for item_id, ms in server.current.audio_ms.items():
        tracker.on_play_ms(item_id, 0, ms)


async def main() -> None:
    async with (
        callstate.Keeper("memory://", secret=SECRET, tools=tools) as keeper,
        RealtimeServer() as server,
    ):
        session = await keeper.start(agent="booking")
        tracker = RealtimePlaybackTracker()  # told what the caller's device played
        url = f"{server.url}/realtime?model=gpt-realtime"
        config: dict[str, Any] = {"url": url, "api_key": "sk-test", "playback_tracker": tracker}
        server.queue(
            Call("move_booking", '{"booking_id": "B1", "time": "20:00"}', call_id="c1"),
            Say(
                "Done, B1 is now at eight, and I have also noted that you prefer a window",
                800,
                4,
                pause_after=2,
            ),
            Call("transfer_to_billing", "{}", call_id="h1"),
            Say("I can see your bill for last night.", 400),
            Say("You owe twelve dollars.", 300),
        )
        seen: list[str] = []
        async with record(booking, session, model_config=config) as call:
            reader = asyncio.create_task(read(call, seen))
            await server.wait_for(
                lambda: any(e["type"] == "session.update" for e in server.current.received)
            )
            await server.user_speaks("Please move booking B1 to eight tonight.")
            # the answer stops halfway: the caller heard 300 of the 400 ms sent, then talks
            await server.wait_for(lambda: sum(server.current.audio_ms.values()) == 400)
            item_id = list(server.current.audio_ms)[-1]
            tracker.on_play_ms(item_id, 0, 300)
            await server.barge_in()
            await server.wait_for(lambda: item_id in server.current.truncated)
            await server.user_speaks("Thanks. I have a question about my bill.")
            await server.wait_for(lambda: call.session.state.agent == "billing")
            await answer_heard(server, tracker)
            await server.drop()  # the network goes away mid-call
            second = await server.wait_sessions(2)
            await server.wait_for(lambda: any(i.get("role") == "system" for i in second.items))
            replayed = [e for e in second.received if e["type"] == "conversation.item.create"]
            await server.user_speaks("How much do I owe?")
            await answer_heard(server, tracker)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        state = call.session.state
        c1 = state.calls["c1"]
        print(*seen, sep="\n")
        print(f"{c1.name} {c1.status} {c1.result}, bookings moved: {moves}")
        print(f"agent {state.agent}, epoch {state.epoch}, reconnects {call.reconnects}")
        print(f"replayed into the new connection: {len(replayed)} items")
        for item in state.items:
            if item.kind == "user":
                print("user:", item.text)
            elif item.kind == "assistant" and item.interrupted:
                print(f"assistant (cut, heard): {item.text}  [kept aside: {item.unspoken}]")
            elif item.kind == "assistant":
                print("assistant:", item.text)


if __name__ == "__main__":
    asyncio.run(main())
