"""A booking agent on the OpenAI Realtime API whose call survives a dropped websocket.

Runs offline against callstate's loopback Realtime server; point ``AsyncOpenAI`` at
the real API (drop ``websocket_base_url``, set ``OPENAI_API_KEY``) for a real call.

    python examples/openai_realtime_agent.py
"""

from __future__ import annotations

import asyncio

from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import connect
from callstate.testing.realtime_server import Call, RealtimeServer, Say

tools = callstate.ToolRegistry()
SECRET = b"use-32-random-bytes-in-production"  # signs tokens, encrypts caller ids


@tools.tool(effect="write", idempotent=True)
async def move_booking(booking_id: str, time: str, *, ctx: callstate.ToolContext) -> dict[str, str]:
    return {"booking_id": booking_id, "time": time, "key": ctx.idempotency_key[:8]}


CONFIG = {
    "type": "realtime",
    "instructions": "You move restaurant bookings.",
    "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}},
    "tools": [{"type": "function", "name": "move_booking", "parameters": {"type": "object"}}],
}


async def main() -> None:
    async with (
        RealtimeServer(session={"audio": CONFIG["audio"]}) as server,
        callstate.Keeper("memory://", secret=SECRET, tools=tools) as keeper,
        AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url) as client,
    ):
        session = await keeper.start(caller="+15551234567", agent="booking")
        server.queue(Call("move_booking", '{"booking_id": "B1", "time": "20:00"}'))
        server.queue(Say("Done: your booking is now at eight."))
        async with connect(client, session, model="gpt-realtime", config=CONFIG) as conn:
            await server.user_speaks("Please move booking B1 to eight tonight.")
            async for event in conn:
                if event.type == "response.function_call_arguments.done":
                    await server.drop()  # the line drops while the tool runs
                elif event.type == "callstate.resumed":
                    print(f"resumed ({event.reason}): {event.replayed} items replayed")
                elif event.type == "response.output_audio_transcript.done":
                    print("agent:", event.transcript)
                    break
        for message in session.context():
            print(message["role"], "|", message.get("content") or message.get("tool_calls"))


if __name__ == "__main__":
    asyncio.run(main())
