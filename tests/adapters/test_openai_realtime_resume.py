"""The Realtime adapter carrying a call into new sessions: drops, the cap, SDK re-dials, handoff."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import json
from typing import Any

from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import VOICE_NOTE, ResumedEvent, connect
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, RealtimeServer, Say

from .test_openai_realtime import (  # noqa: F401 - fixtures
    CONFIG,
    MODEL,
    Gates,
    assert_clean,
    client,
    clock,
    gates,
    keeper,
    nth,
    of_type,
    outputs,
    server,
    settle,
    until,
)


def replayed(session_events: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The conversation items a session received, as (type, role or call id, text) tuples."""
    out: list[tuple[str, ...]] = []
    for e in session_events:
        if e["type"] != "conversation.item.create":
            continue
        item = e["item"]
        if item["type"] == "message":
            out.append(("message", item["role"], item["content"][0]["text"]))
        else:
            out.append((item["type"], item["call_id"]))
    return out


def is_resumed(e: Any) -> bool:
    return isinstance(e, ResumedEvent)


async def test_drop_mid_tool_replays_and_answers_result_from_the_gap(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """A drop mid-tool: the result lands in the gap; the new session gets history, output, response."""
    s = await keeper.start(agent="booking")
    call = Call("move_booking", '{"booking_id": "B1", "time": "20:00"}')
    server.queue(call, Say("Your booking is moved to eight."))
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await server.user_speaks("Move B1 to eight")
        await until(conn, of_type("response.done"))
        await server.drop()  # TCP abort: the client sees 1006
        gates.move.set()
        await settle(lambda: call.call_id in s.state.calls and s.state.calls[call.call_id].terminal)
        resumed = (await until(conn, is_resumed))[-1]
        await until(conn, of_type("response.done"))
    second = server.sessions[1]
    assert ("drop", 1006, [call.call_id]) == (resumed.reason, resumed.close_code, resumed.outputs)
    assert "session.update" == second.received[0]["type"]
    assert CONFIG["instructions"] == second.received[0]["session"]["instructions"]
    items = replayed(second.received)
    assert [
        ("message", "user", "Move B1 to eight"),
        ("function_call", call.call_id),
        ("function_call_output", call.call_id),
    ] == items[:3]
    assert ("message", "system") == items[3][:2]
    assert items[3][2].endswith(VOICE_NOTE)
    assert "response.create" == second.received[-1]["type"]
    assert 1 == len(outputs(second.received, call.call_id))
    assert [] == outputs(server.sessions[0].received, call.call_id)
    assert (False, 1) == (s.on_hold, len(gates.runs))
    assert_clean(server)


async def test_result_after_replay_is_answered_in_the_new_session(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """A call still running at the replay is replayed without output and answered once it lands."""
    s = await keeper.start(agent="booking")
    call = Call("move_booking", '{"booking_id": "B1", "time": "21:00"}')
    server.queue(call, Say("Moved."))
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await server.user_speaks("Move B1 to nine")
        await until(conn, of_type("response.done"))
        await server.drop(code=1011)
        resumed = (await until(conn, is_resumed))[-1]
        gates.move.set()
        await until(conn, of_type("response.done"))
    second = server.sessions[1]
    assert ("drop", 1011, []) == (resumed.reason, resumed.close_code, resumed.outputs)
    assert 1 == len(outputs(second.received, call.call_id))
    assert ("function_call", call.call_id) in replayed(second.received)
    assert_clean(server)


async def test_drop_mid_utterance_keeps_what_was_heard(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """A drop mid-utterance replays the heard part, notes the cut, and asks the model to go on."""
    s = await keeper.start(agent="booking")
    server.queue(
        Say("Your new time is eight in the evening on Friday", audio_ms=2000, pause_after=2)
    )
    server.queue(Say("As I was saying, Friday at eight."))
    played = lambda: 600  # noqa: E731 - of the 1000 ms received
    async with connect(
        client, s, model=MODEL, config=CONFIG, reconnect_delay=0, playback=played
    ) as conn:
        await server.user_speaks("When is it now?")
        await until(conn, nth("response.output_audio.delta", 2))
        await server.drop(code=4000)
        await until(conn, is_resumed)
        await until(conn, of_type("response.done"))
    items = replayed(server.sessions[1].received)
    heard = "Your new time"  # 600 of the 1000 ms that arrived (two of four chunks)
    assert ("message", "assistant", heard) == items[1]
    assert "while you were saying “is eight in”" in items[2][2]
    assert "cut off after “Your new time”" in items[2][2]
    assert "response.create" in [e["type"] for e in server.sessions[1].received]
    cut = next(i for i in s.state.items if i.kind == "assistant")
    assert (heard, True) == (cut.text, cut.done)
    assert_clean(server)


async def test_cap_rollover_and_session_expired_move_to_new_sessions(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, clock: FakeClock
) -> None:
    """Before the 60-minute cap the adapter rolls over; a session_expired error does the same."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Hello."), Say("Hi again."))
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await conn.response.create()
        await until(conn, of_type("response.done"))
        clock.advance(3400.0)  # past max_session_s - rollover_margin_s
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            }
        )
        rolled = (await until(conn, is_resumed))[-1]
        await until(conn, of_type("response.done"))  # the unanswered turn is answered
        await server.expire()
        expired = (await until(conn, is_resumed))[-1]
        await server.wait_for(lambda: len(replayed(server.sessions[-1].received)) == 4)
    assert ("rollover", "session_expired") == (rolled.reason, expired.reason)
    assert 3 == len(server.sessions)
    assert [
        ("message", "assistant", "Hello."),
        ("message", "user", "hi"),
        ("message", "assistant", "Hi again."),
    ] == replayed(server.sessions[2].received)[:3]
    assert [e["code"] for e in server.sessions[1].errors] == ["session_expired"]
    assert [] == server.malformed


async def test_sdk_redial_new_session_created_triggers_replay(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """With the SDK's own on_reconnecting, the new session.created is noticed and replayed into."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Hello there."))
    seen: list[int] = []
    opts = {"on_reconnecting": lambda e: seen.append(e.close_code), "initial_delay": 0.0}
    async with connect(client, s, model=MODEL, config=CONFIG, connect_options=opts) as conn:
        await conn.response.create()
        await until(conn, of_type("response.done"))
        await server.drop(code=1012)
        resumed = (await until(conn, is_resumed))[-1]
        await server.wait_for(lambda: len(replayed(server.sessions[-1].received)) == 2)
    assert ([1012], "new_session") == (seen, resumed.reason)
    assert resumed.new_session_id == server.sessions[1].id
    assert [("message", "assistant", "Hello there.")] == replayed(server.sessions[1].received)[:1]
    assert_clean(server)


async def test_handoff_switches_instructions_and_tools(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """A handoff sends the new agent's config; its tools run on the accepted session, and resumes keep it."""
    s = await keeper.start(agent="booking")
    billing = {
        "instructions": "You are the billing agent.",
        "tools": [{"type": "function", "name": "refund", "parameters": {"type": "object"}}],
    }
    refund = Call("refund", '{"amount": 20}')
    server.queue(Say("Let me pass you to billing."), refund, Say("Refunded twenty."))
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await server.user_speaks("I want a refund")
        await until(conn, of_type("response.done"))
        accepted = await conn.handoff(to="billing", config=billing, reason="refund")
        await until(conn, is_resumed)
        await server.user_speaks("Twenty dollars please")
        await until(conn, nth("response.done", 2))
        await server.drop()
        await until(conn, is_resumed)
        await server.wait_for(lambda: len(server.sessions) == 2 and server.sessions[1].received)
    first, second = server.sessions
    assert ("billing", accepted) == (accepted.state.agent, conn.callstate)
    assert billing["instructions"] == first.config["instructions"]
    assert ["refund"] == [t["name"] for t in first.config["tools"]]
    assert ["refund"] == gates.runs
    assert {"refunded": 20} == json.loads(
        outputs(first.received, refund.call_id)[0]["item"]["output"]
    )["result"]
    assert billing["instructions"] == second.received[0]["session"]["instructions"]
    assert ["refund"] == [t["name"] for t in second.received[0]["session"]["tools"]]
    assert_clean(server)


async def test_resumed_session_replays_on_first_connect(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """A session resumed by another keeper is rebuilt into the first Realtime session it opens."""
    s = await keeper.start(agent="booking")
    s.user_said("What time is my booking?")
    u = s.agent_started("It is at seven.")
    s.agent_finished(u)
    await s.flush()
    resumed = await keeper.resume(s.id)
    async with connect(client, resumed, model=MODEL, config=CONFIG) as conn:
        first = await conn.recv()
        event = await conn.recv()
        await server.wait_for(lambda: len(replayed(server.current.received)) == 3)
    assert ("session.created", "resume") == (first.type, event.reason)
    assert [
        ("message", "user", "What time is my booking?"),
        ("message", "assistant", "It is at seven."),
    ] == replayed(server.current.received)[:2]
    assert_clean(server)
