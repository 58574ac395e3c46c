"""The Gemini Live adapter on the real ``google-genai`` client against the strict loopback server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google import genai
from google.genai import types

import callstate
from callstate.adapters.gemini_live import HANDLE_KEY, GeminiLiveAdapter, GeminiResumed, connect
from callstate.testing import FakeClock
from callstate.testing.gemini_server import Call, GeminiServer, Say

MODEL = "gemini-live-2.5-flash"

CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    system_instruction="You move restaurant bookings.",
    input_audio_transcription=types.AudioTranscriptionConfig(),
    output_audio_transcription=types.AudioTranscriptionConfig(),
    context_window_compression=types.ContextWindowCompressionConfig(
        trigger_tokens=20000, sliding_window=types.SlidingWindow(target_tokens=10000)
    ),
    tools=[
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(name="move_booking", parameters={"type": "object"})
            ]
        )
    ],
)


class Gates:
    """Per-test switches that hold a tool until the test lets it finish."""

    def __init__(self) -> None:
        self.move = asyncio.Event()
        self.runs: list[str] = []


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def server() -> AsyncIterator[GeminiServer]:
    async with GeminiServer() as srv:
        yield srv


@pytest.fixture
async def keeper(gates: Gates) -> AsyncIterator[callstate.Keeper]:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str, time: str) -> dict[str, Any]:
        gates.runs.append("move_booking")
        await gates.move.wait()
        return {"booking_id": booking_id, "time": time, "moved": True}

    async with callstate.Keeper(
        "memory://", secret=b"0123456789abcdef0123456789abcdef", tools=tools, clock=FakeClock()
    ) as k:
        yield k


@pytest.fixture
def client(server: GeminiServer) -> genai.Client:
    return genai.Client(api_key="test", http_options=server.http_options())


async def until(live: GeminiLiveAdapter, pred: Callable[[Any], bool]) -> list[Any]:
    """Read messages until one satisfies ``pred``; returns all read (a safety limit, no pacing)."""
    seen: list[Any] = []
    async with asyncio.timeout(5):
        while True:
            message = await live.recv()
            seen.append(message)
            if pred(message):
                return seen


def turn_done(m: Any) -> bool:
    return m.server_content is not None and bool(m.server_content.turn_complete)


def new_handle(m: Any) -> bool:
    update = m.session_resumption_update
    return update is not None and bool(update.new_handle)


def resumed(m: Any) -> bool:
    return isinstance(m, GeminiResumed)


def roles(s: callstate.Session) -> list[tuple[str, str]]:
    """The context as (role, text-or-tool) pairs."""
    out = []
    for m in s.context():
        body = m.get("content") or ",".join(c["function"]["name"] for c in m["tool_calls"])
        out.append((m["role"], body))
    return out


def assert_clean(server: GeminiServer) -> None:
    """No connection was refused by the strict server."""
    assert [] == [s.refused for s in server.sessions if s.refused]


async def test_a_call_with_a_tool_is_recorded_and_answered_once(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client, gates: Gates
) -> None:
    """Caller turn, tool call through the guard, its toolResponse, and the answer, in order."""
    gates.move.set()
    s = await keeper.start(agent="booking")
    server.queue(Call("move_booking", {"booking_id": "B1", "time": "20:00"}, id="c1"))
    server.queue(Say("Done, it is at eight."))
    async with connect(client, s, model=MODEL, config=CONFIG) as live:
        await server.wait_sessions(1)
        await server.user_speaks("Move B1 to eight please")
        await until(live, turn_done)
        await until(live, new_handle)  # given once a resumable handle covers it
    context = roles(s)
    assert [
        ("user", "Move B1 to eight please"),
        ("assistant", "move_booking"),
    ] == context[:2]
    assert ("tool", "succeeded") == (context[2][0], json.loads(context[2][1])["status"])
    assert ("assistant", "Done, it is at eight.") == context[3]
    assert {"c1"} == server.current.answered
    assert ["move_booking"] == gates.runs
    assert [] == s.owed_to_model()
    assert s.state.userdata[HANDLE_KEY] in server.handles
    assert_clean(server)


async def test_unknown_tool_is_journaled_failed_and_answered(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """A call to a tool nobody registered fails in the journal and the model hears so."""
    s = await keeper.start(agent="booking")
    server.queue(Call("launch_rocket", {"when": "now"}, id="c9"), Say("Sorry, I cannot."))
    async with connect(client, s, model=MODEL, config=CONFIG) as live:
        await server.wait_sessions(1)
        await server.user_speaks("Launch it")
        await until(live, turn_done)
    assert "failed" == s.state.calls["c9"].status
    assert {"c9"} == server.current.answered
    assert_clean(server)


async def test_barge_in_mid_tool_keeps_the_write_and_tells_the_model(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client, gates: Gates
) -> None:
    """Talking over a running write: the call is cancelled on the wire, yet its result
    reaches the model as a note (never a refused toolResponse) and is announced."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Let me move that for you now", chunks=3, pause_after=1, more=True))
    server.queue(Call("move_booking", {"booking_id": "B1", "time": "20:00"}, id="c1"))
    async with connect(client, s, model=MODEL, config=CONFIG, playback=lambda: 300) as live:
        await server.wait_sessions(1)
        await server.user_speaks("Move B1 to eight")
        await until(live, lambda m: m.server_content is not None and m.server_content.model_turn)
        server.resume()
        await until(live, lambda m: m.tool_call is not None)
        await server.barge_in()
        await until(live, lambda m: m.server_content is not None and m.server_content.interrupted)
        gates.move.set()
        await server.wait_for(lambda: any("c1" in t["text"] for t in server.current.conversation))
        server.queue(Say("Your booking is moved."))
        await server.user_speaks("Did it work?")
        await until(live, turn_done)
        await until(live, new_handle)
    call = s.state.calls["c1"]
    assert ("succeeded", "announced") == (call.status, call.delivery)
    assert {"c1"} == server.current.cancelled
    assert set() == server.current.answered
    assert "Let me move" == next(i.spoken for i in s.state.items if i.kind == "assistant")
    assert [] == s.owed_to_model()
    assert_clean(server)
