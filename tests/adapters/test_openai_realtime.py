"""The OpenAI Realtime adapter on the real ``openai`` client against the strict loopback server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import RealtimeAdapter, connect
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, RealtimeServer, Say
from callstate.testing.realtime_session import validate_client_event

MODEL = "gpt-realtime"
#: input transcription on, as a session made from a client secret with this config has it
TRANSCRIBED: dict[str, Any] = {
    "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}
}


class Gates:
    """Per-test switches that hold a tool until the test lets it finish."""

    def __init__(self) -> None:
        self.move = asyncio.Event()
        self.runs: list[str] = []


def make_tools(gates: Gates) -> callstate.ToolRegistry:
    """The registry the tests' agents call into."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def check_availability(date: str) -> dict[str, Any]:
        gates.runs.append("check_availability")
        return {"date": date, "free": True}

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str, time: str) -> dict[str, Any]:
        gates.runs.append("move_booking")
        await gates.move.wait()
        return {"booking_id": booking_id, "time": time, "moved": True}

    @tools.tool(effect="write")
    async def refund(amount: int) -> dict[str, Any]:
        gates.runs.append("refund")
        return {"refunded": amount}

    return tools


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer(session=TRANSCRIBED) as srv:
        yield srv


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def keeper(gates: Gates, clock: FakeClock) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(
        "memory://",
        secret=b"0123456789abcdef0123456789abcdef",
        tools=make_tools(gates),
        clock=clock,
    ) as k:
        yield k


@pytest.fixture
async def client(server: RealtimeServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(api_key="sk-test", websocket_base_url=server.url) as c:
        yield c


CONFIG: dict[str, Any] = {
    "type": "realtime",
    "instructions": "You are the booking agent.",
    **TRANSCRIBED,
    "tools": [
        {"type": "function", "name": "move_booking", "parameters": {"type": "object"}},
        {"type": "function", "name": "check_availability", "parameters": {"type": "object"}},
    ],
}


async def until(conn: RealtimeAdapter, pred: Callable[[Any], bool]) -> list[Any]:
    """Read events until one satisfies ``pred``; returns all read (a safety limit, no pacing)."""
    seen: list[Any] = []
    async with asyncio.timeout(5):
        while True:
            event = await conn.recv()
            seen.append(event)
            if pred(event):
                return seen


def of_type(kind: str) -> Callable[[Any], bool]:
    return lambda e: e.type == kind


def nth(kind: str, n: int) -> Callable[[Any], bool]:
    """True at the ``n``-th event of type ``kind`` seen by this predicate."""
    seen = [0]

    def pred(e: Any) -> bool:
        seen[0] += e.type == kind
        return bool(seen[0] >= n)

    return pred


async def settle(pred: Callable[[], bool]) -> None:
    """Let background tasks run until ``pred()`` holds (yields to the loop; never sleeps)."""
    for _ in range(10_000):
        if pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def outputs(events: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["type"] == "conversation.item.create"
        and e["item"].get("type") == "function_call_output"
        and e["item"]["call_id"] == call_id
    ]


def assert_clean(server: RealtimeServer) -> None:
    """Every event the adapter sent validated, carried an event_id, and drew no error."""
    assert [] == server.malformed
    assert [] == [e for e in server.received if validate_client_event(e) is not None]
    assert [] == [e for e in server.received if not e.get("event_id")]
    assert [] == [err for s in server.sessions for err in s.errors]


# -- item 1: recording, tools, truncation, response.create, event ids ---------------------


async def test_records_assistant_and_caller_turns(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """Assistant transcripts and the caller's transcribed speech land in the session in order."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Hello, how can I help you today?"))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        first = await conn.recv()
        assert "session.created" == first.type
        await conn.response.create()
        await until(conn, of_type("response.done"))
        await server.user_speaks("I want to move my booking", respond=False)
        await until(conn, of_type("conversation.item.input_audio_transcription.completed"))
    assert [
        {"role": "assistant", "content": "Hello, how can I help you today?"},
        {"role": "user", "content": "I want to move my booking"},
    ] == s.context()
    assert CONFIG["instructions"] == server.current.config["instructions"]
    assert_clean(server)


async def test_tool_call_runs_through_guard_and_is_answered_once(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """A function call runs through the guard, gets one output, then one response.create."""
    s = await keeper.start(agent="booking")
    call = Call("check_availability", '{"date": "2024-05-01"}')
    server.queue(call, Say("Yes, May first is free."))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await server.user_speaks("Is May first free?")
        await until(conn, lambda e: e.type == "response.output_audio_transcript.done")
    assert ["check_availability"] == gates.runs
    assert "succeeded" == s.state.calls[call.call_id].status
    sent = outputs(server.received, call.call_id)
    assert 1 == len(sent)
    assert {"date": "2024-05-01", "free": True} == json.loads(sent[0]["item"]["output"])["result"]
    assert 1 == len(server.current.responses)  # the adapter asked once; the first was VAD's
    assert_clean(server)


async def test_truncate_is_clamped_to_received_audio(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """A truncate past the audio received is clamped; the raw SDK sending it gets the error."""
    s = await keeper.start(agent="booking")
    server.queue(Say("One two three four five six seven eight", audio_ms=2000, pause_after=2))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await conn.response.create()
        deltas = await until(conn, nth("response.output_audio.delta", 2))
        item_id = deltas[-1].item_id
        await conn.conversation.item.truncate(item_id=item_id, audio_end_ms=1800)
        await until(conn, of_type("conversation.item.truncated"))
        raw = conn.connection
        assert raw is not None
        await raw.conversation.item.truncate(
            item_id=item_id, audio_end_ms=1800, content_index=0, event_id="raw1"
        )
        err = await until(conn, of_type("error"))
        server.resume()
    assert 1000 == server.current.truncated[item_id]
    assert "invalid_value" == err[-1].error.code
    assert "raw1" == err[-1].error.event_id
    item = next(i for i in s.state.items if i.id == item_id)
    assert (True, "One two three four") == (item.interrupted, item.text)


async def test_response_create_waits_for_active_response_and_yields_to_new_turn(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """response.create is held while a response is active, and dropped if the caller speaks."""
    s = await keeper.start(agent="booking")
    server.queue(
        Say("First answer", pause_after=1), Say("Second answer"), Say("Third", pause_after=1)
    )
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await conn.response.create()
        await until(conn, of_type("response.output_audio.delta"))
        await conn.response.create()  # held: one is active
        server.resume()
        await until(conn, nth("response.done", 2))
        server.gate.clear()
        await conn.response.create()
        await until(conn, of_type("response.output_audio.delta"))
        await conn.response.create()  # held, then superseded by the caller's new turn
        await server.barge_in()
        await until(conn, of_type("response.done"))
        await server.current.speech_done("wait", respond=False)
        await until(conn, of_type("conversation.item.input_audio_transcription.completed"))
    assert 3 == len(server.current.responses)
    assert_clean(server)


async def test_event_ids_are_stamped_and_errors_map_back(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """Every client event gets an event_id; an error names the event that caused it."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await conn.conversation.item.delete(item_id="item_missing")
        errors = await until(conn, of_type("error"))
    source = conn.source_of(errors[-1])
    assert source is not None
    assert ("conversation.item.delete", "item_missing") == (source["type"], source["item_id"])
    assert source["event_id"] == errors[-1].error.event_id
    assert all(e.get("event_id") for e in server.received)
    assert [] == server.malformed


async def test_barge_in_during_tool_truncates_and_holds_the_result(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """A barge-in mid-tool truncates at the played position; the write lands once, announced."""
    s = await keeper.start(agent="booking")
    call = Call("move_booking", '{"booking_id": "B1", "time": "20:00"}')
    server.queue(call, Say("One moment please while I move it", audio_ms=2000, pause_after=2))
    server.queue(Say("Done, and noted."))
    async with connect(client, s, model=MODEL, config=CONFIG, playback=lambda: 600) as conn:
        await server.user_speaks("Move B1 to eight")
        await until(conn, of_type("response.function_call_arguments.done"))
        await until(conn, of_type("response.done"))
        await conn.response.create()  # speak while the tool runs
        await until(conn, nth("response.output_audio.delta", 2))
        await server.barge_in()
        await until(conn, of_type("conversation.item.truncated"))
        gates.move.set()
        await settle(lambda: s.state.calls[call.call_id].terminal)
        await until(
            conn,
            lambda e: e.type == "conversation.item.done" and e.item.type == "function_call_output",
        )
        assert 1 == len(server.current.responses)  # the app's own; none while the caller speaks
        await server.current.speech_done("actually make it nine", respond=True)
        await until(conn, of_type("response.done"))
    truncs = [e for e in server.received if e["type"] == "conversation.item.truncate"]
    assert [600] == [e["audio_end_ms"] for e in truncs]
    assert 1 == len(outputs(server.received, call.call_id))
    assert "announced" == s.state.calls[call.call_id].delivery
    cut = next(i for i in s.state.items if i.kind == "assistant" and i.interrupted)
    assert "One moment" == cut.text
    assert_clean(server)


def test_import_without_openai_names_the_extra() -> None:
    """Importing the adapter without openai installed raises ImportError naming the extra."""
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "try:\n import callstate.adapters.openai_realtime\n"
        "except ImportError as e: print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install callstate[openai]" in out.stdout
