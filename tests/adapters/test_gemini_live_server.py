"""The loopback Gemini Live server is strict: out of order or unknown closes with a reason;
the adapter needs its extra and delivers what is owed when it attaches."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import json

import pytest
from google import genai
from google.genai import errors, types
from websockets.asyncio.client import connect as ws_connect

import callstate
from callstate.adapters.gemini_live import connect
from callstate.testing.gemini_server import Call, GeminiServer, Say

from .extras import import_error
from .test_gemini_live import (  # noqa: F401 - fixtures
    CONFIG,
    MODEL,
    Gates,
    assert_clean,
    client,
    gates,
    keeper,
    server,
    turn_done,
    until,
)

_WS = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


async def refusal(server: GeminiServer, *frames: str) -> str:
    """Send raw frames on a fresh connection; the reason the server closed it with."""
    base = server.http_options().base_url or ""
    url = base.replace("https://", "wss://") + _WS
    headers = {"x-goog-api-key": "test"}
    async with ws_connect(url, ssl=server.client_ssl, additional_headers=headers) as ws:
        for frame in frames:
            await ws.send(frame)
        await server.wait_for(lambda: server.current.closed)
    return server.current.refused or ""


SETUP = json.dumps({"setup": {"model": "models/x"}})


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (['{"clientContent": {}}'], "clientContent before setup"),
        ([SETUP, SETUP], "setup sent twice"),
        (["{nope"], "invalid JSON payload"),
        (['{"bogus": {}}'], "unknown client message 'bogus'"),
        ([json.dumps({"setup": {"model": "models/x", "colour": 1}})], "invalid setup.colour"),
        ([json.dumps({"setup": {"model": "x"}})], "setup.model must be models/<name>"),
        (
            [
                SETUP,
                json.dumps({"toolResponse": {"functionResponses": [{"id": "c0", "name": "f"}]}}),
            ],
            "'c0' is no call of this session",
        ),
        (
            [SETUP, json.dumps({"realtimeInput": {"activityStart": {}}})],
            "activityStart needs automaticActivityDetection disabled",
        ),
        (
            [json.dumps({"setup": {"model": "models/x", "sessionResumption": {"handle": "h0"}}})],
            "'h0' is invalid or expired",
        ),
    ],
)
async def test_server_closes_on_what_the_live_api_refuses(
    server: GeminiServer, frames: list[str], reason: str
) -> None:
    """Out of order, unknown or malformed client messages close the socket, naming why."""
    assert reason in await refusal(server, *frames)


async def test_server_refuses_a_response_for_a_cancelled_call(
    server: GeminiServer, client: genai.Client
) -> None:
    """A toolResponse for a call the barge-in cancelled is refused, as the real API would."""
    server.queue(Call("f", {"a": 1}, id="c1"))
    async with client.aio.live.connect(model=MODEL) as live:
        await server.wait_sessions(1)
        await server.user_speaks("go")
        await server.wait_for(lambda: server.current.pending)
        await server.barge_in()
        response = types.FunctionResponse(id="c1", name="f", response={"output": 1})
        await live.send_tool_response(function_responses=[response])
        with pytest.raises(errors.APIError, match="was cancelled"):
            async for _ in live.receive():
                pass
    assert {"c1"} == server.current.cancelled


async def test_an_outcome_owed_on_attach_reaches_the_model(
    server: GeminiServer, keeper: callstate.Keeper, client: genai.Client, gates: Gates
) -> None:
    """A call that ended before the Live connection opened is given to the model on attach."""
    gates.move.set()
    s = await keeper.start(agent="booking")
    s.user_said("Move B1 to eight")
    await s.run_tool("move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="c7")
    assert ["c7"] == [o.call_id for o in s.owed_to_model()]
    server.queue(Say("It is moved."))
    async with connect(client, s, model=MODEL, config=CONFIG) as live:
        first = await server.wait_sessions(1)
        await server.wait_for(lambda: any("c7" in t["text"] for t in first.conversation))
        await server.user_speaks("Thanks")
        await until(live, turn_done)
    assert [] == s.owed_to_model()
    assert_clean(server)


def test_missing_extra_names_the_install_command() -> None:
    """Without google-genai the adapter's ImportError says `pip install callstate[gemini]`."""
    out = import_error("callstate.adapters.gemini_live", "google.genai")
    assert "pip install callstate[gemini]" in out
