"""The Realtime adapter opens the link of a resumed session once its socket is up."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import connect
from callstate.testing.realtime_server import RealtimeServer, Say

from .test_openai_realtime import (  # noqa: F401 - fixtures
    CONFIG,
    MODEL,
    assert_clean,
    client,
    clock,
    gates,
    keeper,
    of_type,
    server,
    settle,
    until,
)

HELLO = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
}


async def test_a_resumed_session_with_nothing_to_replay_leaves_hold_on_connect(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI
) -> None:
    """A resumed session starts on hold; connecting the adapter opens its link, so what
    the app sends reaches the server instead of being held back."""
    s = await keeper.start(agent="booking")
    s.connection_lost("page reload")
    await s.flush()
    s2 = await keeper.resume(s.id)
    assert s2.on_hold
    async with connect(client, s2, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        assert not s2.on_hold
        await conn.send(HELLO)
        await settle(
            lambda: any(
                e["type"] == "conversation.item.create" for e in server.sessions[0].received
            )
        )
    assert "hi" == s2.state.items[-1].text


@pytest.mark.parametrize("asked", [[], ["Book me a table for eight, please."]])
async def test_speech_held_by_an_earlier_worker_is_voiced_once_the_socket_is_up(
    server: RealtimeServer, keeper: callstate.Keeper, client: AsyncOpenAI, asked: list[str]
) -> None:
    """Agent speech recorded while the link was down, on an earlier worker, was never
    heard: once the new socket is up (with or without a conversation to replay) one
    response asks the model to say it, and the conversation holds the words only as
    that reply plays."""
    held = "Your table is now booked for eight."
    s = await keeper.start(agent="booking")
    for text in asked:
        s.user_said(text)
    s.connection_lost("page reload")
    s.agent_started(held)
    await s.flush()
    s2 = await keeper.resume(s.id)
    assert [held] == [h.text for h in s2.held_speech]
    server.queue(Say(held))
    async with connect(client, s2, model=MODEL, config=CONFIG, reconnect_delay=0) as conn:
        await until(conn, of_type("response.done"))
    (ask,) = [e for e in server.sessions[0].received if e["type"] == "response.create"]
    assert held in ask["response"]["instructions"]
    assert ([], False) == (s2.held_speech, s2.on_hold)
    said = [{"role": "user", "content": text} for text in asked]
    assert [*said, {"role": "assistant", "content": held}] == [
        m for m in s2.context() if m["role"] != "system"
    ]
    assert_clean(server)
