"""callstate with a LiveKit AgentSession on the OpenAI Realtime model, offline.

The plugin (``livekit-plugins-openai`` ``realtime.RealtimeModel``) talks to callstate's
loopback Realtime server, so no key or network is needed: point ``base_url`` at the API
and give it a key to run it for real. The caller talks over a booking move; callstate
holds the result, has it announced in the model's own conversation on the caller's next
turn, and a resumed worker rebuilds that conversation in a new realtime session.

    pip install "callstate[livekit,openai]"
    python examples/livekit_realtime_agent.py
"""

import asyncio
import json
from typing import Any

from livekit.agents import Agent, AgentSession
from livekit.plugins import openai

import callstate
from callstate.adapters.livekit import attach, guarded_tools, restore
from callstate.testing.realtime_server import Call, RealtimeServer, Say

tools = callstate.ToolRegistry()
SECRET = b"use-32-random-bytes-in-production"  # signs tokens, encrypts caller ids
started, done = asyncio.Event(), asyncio.Event()


@tools.tool(effect="write", idempotent=True)
async def move_booking(booking_id: str, time: str) -> dict[str, str]:
    """Move a booking to a new time."""
    started.set()
    await done.wait()  # a slow booking system: the caller talks over it
    return {"booking_id": booking_id, "time": time}


def booker() -> Agent:
    return Agent(instructions="You move table bookings.", tools=guarded_tools(tools))


def conversation(items: list[dict[str, Any]]) -> list[str]:
    """The server's conversation, one line per item."""
    out = []
    for item in items:
        if item["type"] == "message":
            parts = item.get("content") or []
            text = "".join(p.get("text") or p.get("transcript") or "" for p in parts)
            out.append(f"{item['role']} | {text[:90]}")
        else:
            out.append(f"{item['type']} | {item.get('output', item.get('name', ''))[:90]}")
    return out


async def main() -> None:
    async with RealtimeServer() as server, callstate.Keeper(tools=tools, secret=SECRET) as keeper:
        url = server.url.replace("ws://", "http://")  # the plugin dials <base_url>/realtime
        model = openai.realtime.RealtimeModel(base_url=url, api_key="sk-test", modalities=["text"])
        session = await keeper.start(caller="+15551234567", agent="booker")
        lk: AgentSession[Any] = AgentSession(llm=model)
        recovery = attach(lk, session, agents={"booker": booker}, end_on_close=False)
        await lk.start(booker())

        args = json.dumps({"booking_id": "B1", "time": "20:00"})
        server.queue(Call("move_booking", args, "c1"))
        turn = lk.run(user_input="Please move booking B1 to eight.")
        await started.wait()
        cut = lk.interrupt()  # the caller talks over the model while the write runs
        done.set()
        await cut
        await turn
        print("held:", session.state.calls["c1"].delivery)

        server.queue(Say("Your table is now at eight."))
        await lk.run(user_input="Hello? Did it work?")
        print("announced:", session.state.calls["c1"].delivery)
        [note] = [line for line in conversation(server.current.items) if line.startswith("system")]
        print(note[:60])  # what the model was told before it answered
        await session.flush()
        await lk.aclose()
        await recovery.wait_idle()
        await model.aclose()

        # a new worker picks the call up: a new realtime session gets the conversation
        resumed = await keeper.resume(session.id)
        model = openai.realtime.RealtimeModel(base_url=url, api_key="sk-test", modalities=["text"])
        lk, agent, recovery = await restore(resumed, {"booker": booker}, llm=model)
        await lk.start(agent)
        server.queue(Say("Anything else?"))
        await lk.run(user_input="Thanks!")
        for line in conversation(server.current.items):
            print(line)
        await lk.aclose()  # the call ends with the LiveKit session
        await recovery.wait_idle()
        await model.aclose()


if __name__ == "__main__":
    asyncio.run(main())
