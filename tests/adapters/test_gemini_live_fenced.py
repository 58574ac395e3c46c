"""A Gemini Live connection whose call another keeper took over says so once and stops."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types

import callstate
from callstate.adapters.gemini_live import FencedEvent, GeminiLiveAdapter, connect
from callstate.testing import FakeClock
from callstate.testing.gemini_server import GeminiServer, Say

from .test_gemini_live import (  # noqa: F401 - fixtures
    CONFIG,
    MODEL,
    assert_clean,
    client,
    new_handle,
    server,
    turn_done,
    until,
)

SECRET = b"0123456789abcdef0123456789abcdef"
LOGGER = "callstate.adapters.gemini_live"


@pytest.fixture
async def keepers(tmp_path: Path) -> AsyncIterator[tuple[callstate.Keeper, callstate.Keeper]]:
    """Two keepers on one SQLite store; ``a``'s heartbeat looks at its leases every 0.1 s."""
    url = f"sqlite:///{tmp_path}/cs.db"
    async with (
        callstate.Keeper(url, secret=SECRET, clock=FakeClock(), lease_ttl=0.3) as a,
        callstate.Keeper(url, secret=SECRET, clock=FakeClock()) as b,
    ):
        yield a, b


async def read_to_end(live: GeminiLiveAdapter) -> list[Any]:
    """Everything the app's ``async for`` loop sees until it ends (a safety limit only)."""
    seen: list[Any] = []
    async with asyncio.timeout(5):
        async for message in live:
            seen.append(message)
    return seen


async def a_first_turn(server: GeminiServer, live: GeminiLiveAdapter) -> None:
    await server.wait_sessions(1)
    server.queue(Say("Hello, how can I help?"))
    await server.user_speaks("Hi there")
    await until(live, turn_done)
    await until(live, new_handle)  # the last message of the turn


async def test_a_quiet_line_gets_one_fenced_event_and_the_loop_ends(
    server: GeminiServer,
    client: genai.Client,
    keepers: tuple[callstate.Keeper, callstate.Keeper],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Taken over while nothing is said: the waiting loop wakes with one FencedEvent and
    ends, the connection is closed and not re-dialled, one session.fenced, one log line."""
    a, b = keepers
    s = await a.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as live:
        await a_first_turn(server, live)
        await s.flush()
        seq = s.state.seq
        s2 = await b.resume(s.id)  # another worker takes the call; a's heartbeat sees it
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            seen = await read_to_end(live)
        await server.wait_for(lambda: server.current.closed)
        with pytest.raises(callstate.StaleEpochError):
            await live.recv()
    assert [FencedEvent] == [type(m) for m in seen]
    event = seen[0]
    assert ("callstate.fenced", s.id, 1) == (event.type, event.session_id, event.epoch)
    assert isinstance(event.error, callstate.StaleEpochError)
    assert seq == s.state.seq
    assert 1 == len(server.sessions)
    assert 1 == a.observer.counts["session.fenced"]
    assert 1 == len([r for r in caplog.records if "fenced" in r.getMessage()])
    assert 2 == s2.state.epoch
    assert_clean(server)


async def test_a_caller_speaking_after_the_takeover_gets_no_error_per_message(
    server: GeminiServer,
    client: genai.Client,
    keepers: tuple[callstate.Keeper, callstate.Keeper],
) -> None:
    """Fenced by the store refusing a batch while the caller talks on: the app's loop
    gets one FencedEvent, no StaleEpochError, and nothing more is recorded or sent."""
    a, b = keepers
    s = await a.start(agent="booking")
    async with connect(client, s, model=MODEL, config=CONFIG, reconnect_delay=0) as live:
        await a_first_turn(server, live)
        await s.flush()
        await b.resume(s.id)
        s.user_partial("are you")  # the store refuses this batch: the handle is fenced
        with pytest.raises(callstate.StaleEpochError):
            await s.flush()
        seq = s.state.seq
        sent = len(server.received)
        server.queue(Say("Still here."))
        await server.user_speaks("are you there?")
        seen = await read_to_end(live)
        turn = types.Content(role="user", parts=[types.Part(text="hello?")])
        await live.send_client_content(turns=[turn], turn_complete=True)  # dropped
    assert 1 == len([m for m in seen if isinstance(m, FencedEvent)])
    assert isinstance(seen[-1], FencedEvent)
    assert seq == s.state.seq
    assert sent == len(server.received)
    assert 1 == len(server.sessions)
    assert 1 == a.observer.counts["session.fenced"]
