"""A booking agent on the Gemini Live API whose call survives a dropped websocket.

Runs offline against callstate's loopback Live server; for a real call build the client
with your API key and no ``http_options`` (``genai.Client(api_key=...)``).

    python examples/gemini_live_agent.py
"""

from __future__ import annotations

import asyncio

from google import genai
from google.genai import types

import callstate
from callstate.adapters.gemini_live import connect
from callstate.testing.gemini_server import Call, GeminiServer, Say

tools = callstate.ToolRegistry()
SECRET = b"use-32-random-bytes-in-production"  # signs tokens, encrypts caller ids


@tools.tool(effect="write", idempotent=True)
async def move_booking(booking_id: str, time: str, *, ctx: callstate.ToolContext) -> dict[str, str]:
    return {"booking_id": booking_id, "time": time, "key": ctx.idempotency_key[:8]}


CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    system_instruction="You move restaurant bookings.",
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    context_window_compression=types.ContextWindowCompressionConfig(
        sliding_window=types.SlidingWindow(target_tokens=16000)
    ),
    tools=[{"function_declarations": [{"name": "move_booking", "parameters": {"type": "object"}}]}],
)


async def main() -> None:
    async with (
        GeminiServer() as server,
        callstate.Keeper("memory://", secret=SECRET, tools=tools) as keeper,
    ):
        client = genai.Client(api_key="local", http_options=server.http_options())
        session = await keeper.start(caller="+15551234567", agent="booking")
        server.queue(Call("move_booking", {"booking_id": "B1", "time": "20:00"}))
        server.queue(Say("Done: your booking is now at eight."))
        async with connect(client, session, model="gemini-live-2.5-flash", config=CONFIG) as live:
            await server.wait_sessions(1)
            await server.user_speaks("Please move booking B1 to eight tonight.")
            dropped = False
            async for message in live:
                if getattr(message, "type", "") == "callstate.resumed":
                    print(f"resumed ({message.reason}), with handle: {message.with_handle}")
                elif message.tool_call is not None and not dropped:
                    await server.drop()  # the line drops while the tool runs
                    dropped = True
                elif message.server_content and message.server_content.turn_complete:
                    break
        for m in session.context():
            print(m["role"], "|", m.get("content") or m.get("tool_calls"))


if __name__ == "__main__":
    asyncio.run(main())
