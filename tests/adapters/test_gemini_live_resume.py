"""Gemini Live continuity: resumption handles on a drop and on goAway, replay when the
handle is gone, and frames the SDK cannot read."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

from google import genai
from google.genai import types

import callstate
from callstate.adapters.gemini_live import HANDLE_KEY, connect, replay_turns
from callstate.testing.gemini_server import Call, GeminiServer, Say

from .test_gemini_live import (  # noqa: F401 - fixtures
    CONFIG,
    MODEL,
    Gates,
    assert_clean,
    client,
    gates,
    keeper,
    new_handle,
    resumed,
    server,
    turn_done,
    until,
)


async def a_first_turn(server: GeminiServer, live: object) -> None:
    await server.wait_sessions(1)
    server.queue(Say("Hello, how can I help?"))
    await server.user_speaks("Hi there")
    await until(live, turn_done)  # type: ignore[arg-type]
    await until(live, new_handle)  # type: ignore[arg-type]


async def test_drop_resumes_with_the_handle_without_a_greeting(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """A dropped socket reconnects with the journaled handle: same conversation, nothing
    replayed, nothing said, and the session off hold again."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as live:
        await a_first_turn(server, live)
        handle = s.state.userdata[HANDLE_KEY]
        await server.drop()
        event = (await until(live, resumed))[-1]
        second = await server.wait_sessions(2)
    assert (True, 0, 1006) == (event.with_handle, event.replayed, event.close_code)
    assert handle == second.resumed_from
    assert [("user", "Hi there"), ("model", "Hello, how can I help?")] == [
        (t["role"], t["text"]) for t in second.conversation
    ]
    assert [] == [m for m in second.received if "clientContent" in m]  # no replay, no prompt
    assert not s.on_hold
    assert CONFIG.context_window_compression is not None
    assert {"slidingWindow": {"targetTokens": 10000}, "triggerTokens": 20000} == second.compression
    assert_clean(server)


async def test_go_away_reconnects_before_the_server_ends_the_line(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """On goAway the adapter opens the next connection itself, resumed by handle, and
    closes the old one; the server never had to cut it."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG) as live:
        await a_first_turn(server, live)
        await server.go_away("5s")
        seen = await until(live, resumed)
        second = await server.wait_sessions(2)
        await server.wait_for(lambda: server.sessions[0].closed)
    assert "go_away" == seen[-1].reason
    assert any(m.go_away is not None for m in seen[:-1])
    assert (True, s.state.userdata[HANDLE_KEY]) == (seen[-1].with_handle, second.resumed_from)
    assert server.sessions[0].refused is None
    assert_clean(server)


async def test_expired_handle_falls_back_to_replaying_the_conversation(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """A handle the server refuses is forgotten; the conversation is replayed as turns
    without turnComplete, so the model continues instead of greeting."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as live:
        await a_first_turn(server, live)
        server.expire_handles()
        await server.drop(1011)
        event = (await until(live, resumed))[-1]
        await until(live, new_handle)  # the new connection issues its own handle
        final = server.current
    assert (False, 1011) == (event.with_handle, event.close_code)
    refused = [x.refused for x in server.sessions if x.refused]
    assert 1 == len(refused)
    assert "invalid or expired" in refused[0]
    (content,) = [m["clientContent"] for m in final.received if "clientContent" in m]
    assert content.get("turnComplete") is not True
    texts = [(t["role"], t["text"]) for t in final.conversation]
    assert [("user", "Hi there"), ("model", "Hello, how can I help?")] == texts[:2]
    assert event.replayed == len(texts)
    assert s.state.userdata[HANDLE_KEY] in server.handles


async def test_malformed_frames_are_counted_and_the_call_goes_on(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """Not JSON, a wrong type and an unknown message are skipped and kept in bad_frames;
    the next turn still records."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG) as live:
        await a_first_turn(server, live)
        await server.send_raw("{not json")
        await server.send_raw('{"toolCall": {"functionCalls": "x"}}')
        await server.send_raw('{"serverContent": {"turnComplete": "soon"}}')
        server.queue(Say("Still here."))
        await server.user_speaks("Are you there?")
        await until(live, turn_done)
    assert 3 == len(live.bad_frames)
    assert "Still here." == s.context()[-1]["content"]
    assert 1 == len(server.sessions)


def test_replay_keeps_the_newest_turns_inside_the_compression_window() -> None:
    """With a sliding window of N tokens the replay drops the oldest turns, never the note."""
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 40}
        for i in range(10)
    ]
    messages.append({"role": "system", "content": "resume note"})
    turns = replay_turns(messages, max_tokens=40)  # about 160 characters
    texts = [p.text for t in turns for p in t.parts or []]
    assert "(note: resume note)" in texts[-1]
    assert sum(len(t or "") for t in texts) <= 160
    assert 11 == len(replay_turns(messages))  # the note is a user turn after the last answer
    assert (
        types.Content(role="model", parts=[types.Part(text="hi")])
        == replay_turns([{"role": "assistant", "content": "hi"}])[0]
    )


async def test_go_away_mid_answer_waits_for_the_turn_to_end(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """A goAway while the model speaks moves the call only once that turn is complete."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG) as live:
        await a_first_turn(server, live)
        server.queue(Say("Eight works, shall I book it?", chunks=2, pause_after=1))
        await server.user_speaks("What about eight?")
        await until(live, lambda m: m.server_content is not None and m.server_content.model_turn)
        await server.go_away("20s")
        await until(live, lambda m: m.go_away is not None)
        server.resume()
        seen = await until(live, resumed)
    assert any(turn_done(m) for m in seen if not resumed(m))
    assert "Eight works, shall I book it?" == s.context()[-1]["content"]
    assert 2 == len(server.sessions)


async def test_a_resumed_session_attaches_with_its_journaled_handle(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """A worker that resumes the call dials with the handle from the journal: no replay."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG) as live:
        await a_first_turn(server, live)
    handle = s.state.userdata[HANDLE_KEY]
    await s.flush()
    await s.close()
    s2 = await keeper.resume(s.id)
    async with connect(client, s2, model=MODEL, config=CONFIG):
        second = await server.wait_sessions(2)
    assert handle == second.resumed_from
    assert [] == [m for m in second.received if "clientContent" in m]
    assert not s2.on_hold


async def test_a_call_running_through_a_replayed_drop_is_voiced_on_the_new_line(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client, gates: Gates
) -> None:
    """The write asked before the drop finishes after it: the new connection (no valid
    handle, so replayed) gets its result as a note that lets the model answer."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as live:
        await a_first_turn(server, live)
        server.queue(Call("move_booking", {"booking_id": "B1", "time": "20:00"}, id="c1"))
        await server.user_speaks("Move B1 to eight")
        await until(live, lambda m: m.tool_call is not None)
        server.expire_handles()
        await server.drop()
        event = (await until(live, resumed))[-1]
        server.queue(Say("Moved to eight."))
        gates.move.set()
        await until(live, turn_done)
        await until(live, new_handle)
    assert (False, "Moved to eight.") == (event.with_handle, s.context()[-1]["content"])
    assert set() == server.current.answered  # the new session never asked for c1
    assert [] == s.owed_to_model()
    assert ["move_booking"] == gates.runs


async def test_a_tool_response_lost_with_the_line_is_given_again_after_the_resume(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client, gates: Gates
) -> None:
    """A toolResponse the server never read (the line dropped under it) stays owed: the
    connection resumed by the handle from before the call gets the result once, as a
    note, and it counts as given once a handle covers it."""
    s = await keeper.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as live:
        await a_first_turn(server, live)
        handle = s.state.userdata[HANDLE_KEY]
        server.queue(Call("move_booking", {"booking_id": "B1", "time": "20:00"}, id="c1"))
        await server.user_speaks("Move B1 to eight")
        await until(live, lambda m: m.tool_call is not None)
        server.lose_next("toolResponse")
        server.queue(Say("Moved to eight."))
        gates.move.set()
        event = (await until(live, resumed))[-1]
        second = await server.wait_sessions(2)
        assert ["c1"] == [o.call_id for o in s.owed_to_model()]
        await until(live, new_handle)
    assert (True, handle) == (event.with_handle, second.resumed_from)
    notes = [t["text"] for t in second.conversation if "result of move_booking" in t["text"]]
    assert 1 == len(notes)
    assert '"moved":true' in notes[0]
    assert ("model", "Moved to eight.") == tuple(second.conversation[-1].values())
    assert [] == s.owed_to_model()
    assert ["move_booking"] == gates.runs
    assert_clean(server)


async def test_speech_held_by_an_earlier_worker_is_voiced_once_the_line_is_up(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client
) -> None:
    """Agent speech recorded while the link was down, on an earlier worker, was never
    heard: the new connection asks the model to say it in one turn, and the
    conversation holds the words only as that reply plays. A queued ``client_content``
    entry goes out before it, in order."""
    held = "Your table is now booked for eight."
    s = await keeper.start(agent="booking")
    s.user_said("Book me a table for eight, please.")
    s.connection_lost("worker restart")
    note = {"turns": [{"role": "user", "parts": [{"text": "(the caller is on a mobile)"}]}]}
    s.outbox.send({"client_content": note})
    s.agent_started(held)
    await s.flush()
    s2 = await keeper.resume(s.id)
    server.queue(Say(held))
    async with connect(client, s2, model=MODEL, config=CONFIG, reconnect_delay=0) as live:
        await until(live, turn_done)
    texts = [t["text"] for t in server.sessions[0].conversation]
    assert "(the caller is on a mobile)" in texts
    asked = [t for t in texts if held in t and t != held]
    assert 1 == len(asked)
    assert texts.index("(the caller is on a mobile)") < texts.index(asked[0])
    assert ([], False) == (s2.held_speech, s2.on_hold)
    assert [("user", "Book me a table for eight, please."), ("assistant", held)] == [
        (m["role"], m["content"]) for m in s2.context() if m["role"] != "system"
    ]
    assert_clean(server)
