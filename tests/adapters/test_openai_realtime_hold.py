"""The Realtime adapter opens the link of a resumed session once its socket is up."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import connect
from callstate.testing.realtime_server import RealtimeServer

from .test_openai_realtime import (  # noqa: F401 - fixtures
    CONFIG,
    MODEL,
    client,
    clock,
    gates,
    keeper,
    server,
    settle,
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
