"""Function calls the model gets wrong, through the real ``openai`` client and the loopback server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import connect
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, RealtimeServer, Say

from .test_openai_realtime import CONFIG, MODEL, Gates, assert_clean, make_tools, of_type, outputs
from .test_openai_realtime import until as recv_until


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer() as srv:
        yield srv


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def keeper(gates: Gates) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper("memory://", tools=make_tools(gates), clock=FakeClock()) as k:
        yield k


@pytest.fixture
async def client(server: RealtimeServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(api_key="sk-test", websocket_base_url=server.url) as c:
        yield c


async def test_a_reused_call_id_gets_its_own_output_under_that_id(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """A server that calls every function ``call_0`` gets each call's own result under it."""
    s = await keeper.start(agent="booking")
    server.queue(
        Call("check_availability", '{"date": "2024-05-01"}', call_id="call_0"), Say("Yes.")
    )
    server.queue(Call("check_availability", '{"date": "2024-05-02"}', call_id="call_0"), Say("No."))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await server.user_speaks("Is May first free?")
        await recv_until(conn, of_type("response.output_audio_transcript.done"))
        await server.user_speaks("And the second?")
        await recv_until(conn, of_type("response.output_audio_transcript.done"))
    assert ["check_availability", "check_availability"] == gates.runs
    sent = [json.loads(e["item"]["output"])["result"] for e in outputs(server.received, "call_0")]
    assert [{"date": "2024-05-01", "free": True}, {"date": "2024-05-02", "free": True}] == sent
    assert ("call_0", "2024-05-02") == (
        s.state.calls["call_0#2"].wire_id,
        s.state.calls["call_0#2"].args["date"],
    )
    assert [] == server.current.left_unanswered
    assert_clean(server)


async def test_bad_arguments_and_unknown_names_are_journaled_and_answered(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """``null``, broken JSON and an unknown name: failed calls, journaled, each answered once."""
    s = await keeper.start(agent="booking")
    bad = [
        Call("move_booking", "null", call_id="c1"),
        Call("move_booking", '{"booking_id": "B1",', call_id="c2"),
        Call("teleport", '{"to": "mars"}', call_id="c3"),
    ]
    for call in bad:
        server.queue(call, Say("Sorry."))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        for _ in bad:
            await server.user_speaks("move it")
            await recv_until(conn, of_type("response.output_audio_transcript.done"))
    calls = s.state.calls
    assert [] == gates.runs
    assert ["failed"] * 3 == [calls[c].status for c in ("c1", "c2", "c3")]
    assert "must be a JSON object, got null: 'null'" in (calls["c1"].error or "")
    assert "arguments are not valid JSON" in (calls["c2"].error or "")
    assert ("UnknownTool", "no tool named 'teleport'") == (
        calls["c3"].error_type,
        (calls["c3"].error or "")[:24],
    )
    answers = [
        json.loads(outputs(server.received, c)[0]["item"]["output"]) for c in ("c1", "c2", "c3")
    ]
    assert [calls[c].error for c in ("c1", "c2", "c3")] == [a["error"] for a in answers]
    assert_clean(server)


async def test_a_call_asked_again_with_the_same_arguments_gets_an_output_for_each_ask(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """A server that reuses ``call_0`` with the same arguments in a later response gets
    the recorded result again under it (one output per function_call item, the tool run
    once) and an answer, instead of a call left waiting."""
    s = await keeper.start(agent="booking")
    server.queue(
        Call("check_availability", '{"date": "2024-05-01"}', call_id="call_0"), Say("Yes.")
    )
    server.queue(
        Call("check_availability", '{"date": "2024-05-01"}', call_id="call_0"), Say("Still yes.")
    )
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await server.user_speaks("Is May first free?")
        await recv_until(conn, of_type("response.output_audio_transcript.done"))
        await server.user_speaks("Sure about the first?")
        await recv_until(conn, of_type("response.output_audio_transcript.done"))
    assert ["check_availability"] == gates.runs
    sent = [json.loads(e["item"]["output"])["result"] for e in outputs(server.received, "call_0")]
    assert [{"date": "2024-05-01", "free": True}] * 2 == sent
    assert "Still yes." == s.context()[-1]["content"]
    assert ["call_0"] == [c for c in s.state.calls if c.startswith("call_0")]
    assert ([], 2) == (server.current.left_unanswered, len(server.current.responses))
    assert_clean(server)
