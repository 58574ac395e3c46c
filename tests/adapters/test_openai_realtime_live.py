"""The Realtime adapter on a live line: quiet rollovers, late transcripts, parallel calls,
malformed frames, which item played, and the ids of replayed items."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import asyncio
import json
from typing import Any

from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import ResumedEvent, connect
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, Calls, RealtimeServer, Say

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


def is_resumed(e: Any) -> bool:
    return isinstance(e, ResumedEvent)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Client event types with the call id of outputs: the order the server saw."""
    out = []
    for e in events:
        item = e.get("item") or {}
        out.append(f"output:{item['call_id']}" if item.get("call_id") else e["type"])
    return out


async def test_quiet_line_rolls_over_before_the_cap(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, clock: FakeClock
) -> None:
    """With no server event at all, the adapter still rolls over rollover_margin_s before the cap."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Hello."))
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await conn.response.create()
        await until(conn, of_type("response.done"))
        waiting = asyncio.create_task(until(conn, is_resumed))
        for _ in range(100):  # let the reader block on the silent socket
            await asyncio.sleep(0)
        clock.advance(3400.0)  # past max_session_s - rollover_margin_s; the line stays silent
        rolled = (await waiting)[-1]
    assert ("rollover", 2) == (rolled.reason, len(server.sessions))
    assert rolled.new_session_id == server.sessions[1].id
    assert_clean(server)


async def test_late_caller_transcript_keeps_order_and_the_barge_in(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """A transcript that arrives after the answer began goes before it; a barge-in still cuts it."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Your booking is at seven on Friday evening", audio_ms=2000, pause_after=2))
    async with connect(client, s, model=MODEL, config=CONFIG, playback=lambda: 600) as conn:
        await server.user_speaks("When is my booking?", late=True)
        await until(conn, nth("response.output_audio.delta", 2))
        await server.transcribe()  # transcription finishes while the answer streams
        await until(conn, of_type("conversation.item.input_audio_transcription.completed"))
        await server.barge_in()
        await until(conn, of_type("conversation.item.truncated"))
    truncs = [e for e in server.received if e["type"] == "conversation.item.truncate"]
    assert [600] == [e["audio_end_ms"] for e in truncs]
    assert [
        {"role": "user", "content": "When is my booking?"},
        {"role": "assistant", "content": "Your"},  # 600 of the 1000 ms that arrived
    ] == s.context()
    cut = next(i for i in s.state.items if i.kind == "assistant")
    assert (True, "booking is at") == (cut.interrupted, cut.unspoken)
    assert_clean(server)


async def test_parallel_calls_get_one_response_after_all_outputs(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """Two calls of one response: both outputs go in first, then exactly one response.create."""
    s = await keeper.start(agent="booking")
    check = Call("check_availability", '{"date": "2024-05-01"}')
    move = Call("move_booking", '{"booking_id": "B1", "time": "20:00"}')
    server.queue(Calls([check, move]), Say("May first is free and B1 is moved."))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await server.user_speaks("Is May first free? And move B1 to eight.")
        await until(conn, of_type("response.done"))
        await server.wait_for(lambda: outputs(server.received, check.call_id))
        gates.move.set()  # the second call lands well after the first
        await until(conn, of_type("response.output_audio_transcript.done"))
    sent = [k for k in kinds(server.current.received) if k != "session.update"]
    assert [f"output:{check.call_id}", f"output:{move.call_id}", "response.create"] == sent
    assert 1 == len(server.current.responses)
    assert ["check_availability", "move_booking"] == gates.runs
    assert_clean(server)


async def test_malformed_frames_are_skipped_and_the_line_stays_up(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """Not JSON, a JSON array and an item event without its item are skipped, not a close."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Still here."))
    bad = '{"type": "response.output_item.added", "event_id": "e1", "response_id": "r1"}'
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await conn.recv()  # session.created
        for frame in ("{not json", "[1, 2]", bad):
            await server.send_raw(frame)
        await conn.response.create()
        events = await until(conn, of_type("response.done"))
    assert [] == [e for e in events if is_resumed(e)]
    assert 1 == len(server.sessions)
    problems = [b.problem for b in conn.bad_frames]
    assert 3 == len(problems)
    assert problems[0].startswith("not JSON")
    assert "JSON list" in problems[1]
    assert problems[2].startswith("item of response.output_item.added")
    assert [{"role": "assistant", "content": "Still here."}] == s.context()
    assert_clean(server)


async def test_playback_names_the_item_that_was_playing(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """playback() names the item heard: it is cut there, a later item that arrived is cut at 0."""
    s = await keeper.start(agent="booking")
    server.queue(Say("First one two three", audio_ms=1000, chunks=4))
    server.queue(Say("Second four five six", audio_ms=1000, chunks=4, pause_after=2))
    playing: list[tuple[str, int]] = []
    async with connect(
        client, s, model=MODEL, config=CONFIG, playback=lambda: playing[-1] if playing else None
    ) as conn:
        await conn.response.create()
        first = (await until(conn, of_type("response.output_item.added")))[-1].item.id
        await until(conn, of_type("response.done"))
        await conn.response.create()
        second = (await until(conn, of_type("response.output_item.added")))[-1].item.id
        await until(conn, nth("response.output_audio.delta", 2))
        playing.append((first, 500))  # the caller's speaker is still on the first answer
        await server.barge_in()
        await until(conn, nth("conversation.item.truncated", 2))
    truncs = [(e["item_id"], e["audio_end_ms"]) for e in server.received if "audio_end_ms" in e]
    assert [(second, 0), (first, 500)] == truncs
    assert [{"role": "assistant", "content": "First one"}] == s.context()
    assert_clean(server)


async def test_replayed_items_map_to_their_new_ids(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, gates: Gates
) -> None:
    """After a replay the app learns each item's id in the new session, and may use the old one."""
    s = await keeper.start(agent="booking")
    gates.move.set()
    call = Call("move_booking", '{"booking_id": "B1", "time": "20:00"}')
    server.queue(Say("Which booking?"), call, Say("Moved."))
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await conn.response.create()
        said = (await until(conn, of_type("response.output_item.added")))[-1].item.id
        await until(conn, of_type("response.done"))
        await server.user_speaks("B1 to eight please")
        await until(conn, nth("response.done", 2))
        await server.drop(code=1011)
        resumed = (await until(conn, is_resumed))[-1]
        await conn.conversation.item.delete(item_id=said)  # the id the app knew it by
        await until(conn, of_type("conversation.item.deleted"))
    second = server.sessions[1]
    created = {
        e["item"]["id"]: e["item"]
        for e in second.received
        if e["type"] == "conversation.item.create"
    }
    assert {said, "user@1", call.call_id} <= set(resumed.item_ids)
    assert "Which booking?" == created[resumed.item_ids[said]]["content"][0]["text"]
    assert "B1 to eight please" == created[resumed.item_ids["user@1"]]["content"][0]["text"]
    assert call.call_id == created[resumed.item_ids[call.call_id]]["call_id"]
    assert resumed.item_ids == {k: conn.item_ids[k] for k in resumed.item_ids}
    deletes = [e for e in second.received if e["type"] == "conversation.item.delete"]
    assert [resumed.item_ids[said]] == [e["item_id"] for e in deletes]
    assert None is second.item(resumed.item_ids[said])
    assert json.loads(outputs(second.received, call.call_id)[0]["item"]["output"])["status"]
    assert_clean(server)


async def test_handoff_voice_waits_for_the_next_session(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """After assistant audio the voice is locked: a handoff's voice comes with the next session."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Let me pass you to billing."))
    billing = {"instructions": "You are billing.", "audio": {"output": {"voice": "cedar"}}}
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await conn.response.create()
        await until(conn, of_type("response.done"))
        raw = conn.connection
        assert raw is not None
        await raw.session.update(session={"type": "realtime", **billing}, event_id="raw1")
        refused = (await until(conn, of_type("error")))[-1]
        await conn.handoff(to="billing", config=billing)
        await until(conn, is_resumed)
        first = server.current
        await server.wait_for(lambda: "You are billing." == first.config["instructions"])
        await server.drop()
        await until(conn, is_resumed)
    assert ("cannot_update_voice", "raw1") == (refused.error.code, refused.error.event_id)
    second = server.sessions[1]
    assert "voice" not in (first.config.get("audio") or {}).get("output", {})
    assert "cedar" == second.received[0]["session"]["audio"]["output"]["voice"]
    assert [] == server.malformed
    assert ["cannot_update_voice"] == [e["code"] for e in first.errors]
