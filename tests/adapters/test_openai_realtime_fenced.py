"""A Realtime connection whose call another keeper took over says so once and stops."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import FencedEvent, RealtimeAdapter, connect
from callstate.testing import FakeClock
from callstate.testing.realtime_server import RealtimeServer, Say

from .test_openai_realtime import (  # noqa: F401 - fixtures
    CONFIG,
    MODEL,
    assert_clean,
    client,
    of_type,
    server,
    until,
)

SECRET = b"0123456789abcdef0123456789abcdef"
LOGGER = "callstate.adapters.openai_realtime"


@pytest.fixture
async def keepers(tmp_path: Path) -> AsyncIterator[tuple[callstate.Keeper, callstate.Keeper]]:
    """Two keepers on one SQLite store; ``a``'s heartbeat looks at its leases every 0.1 s."""
    url = f"sqlite:///{tmp_path}/cs.db"
    async with (
        callstate.Keeper(url, secret=SECRET, clock=FakeClock(), lease_ttl=0.3) as a,
        callstate.Keeper(url, secret=SECRET, clock=FakeClock()) as b,
    ):
        yield a, b


async def read_to_end(conn: RealtimeAdapter) -> list[Any]:
    """Everything the app's ``async for`` loop sees until it ends (a safety limit only)."""
    seen: list[Any] = []
    async with asyncio.timeout(5):
        async for event in conn:
            seen.append(event)
    return seen


def fenced_events(seen: list[Any]) -> list[FencedEvent]:
    return [e for e in seen if isinstance(e, FencedEvent)]


async def test_a_quiet_line_gets_one_fenced_event_and_the_loop_ends(
    server: RealtimeServer,
    client: AsyncOpenAI,
    keepers: tuple[callstate.Keeper, callstate.Keeper],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Taken over while nothing is said: the waiting loop wakes with one FencedEvent and
    ends, the socket is closed, one session.fenced event and one log line."""
    a, b = keepers
    s = await a.start(agent="booker")
    server.queue(Say("Hello there."))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await server.user_speaks("hi")
        await until(conn, of_type("response.done"))
        await s.flush()
        seq = s.state.seq
        s2 = await b.resume(s.id)  # another worker takes the call; a's heartbeat sees it
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            seen = await read_to_end(conn)
        await server.wait_for(lambda: server.current.closed)
        with pytest.raises(callstate.StaleEpochError):
            await conn.recv()
    assert [FencedEvent] == [type(e) for e in seen]
    event = seen[0]
    assert ("callstate.fenced", s.id, 1) == (event.type, event.session_id, event.epoch)
    assert isinstance(event.error, callstate.StaleEpochError)
    assert seq == s.state.seq
    assert 1 == a.observer.counts["session.fenced"]
    assert 1 == len([r for r in caplog.records if "fenced" in r.getMessage()])
    assert 2 == s2.state.epoch
    assert_clean(server)


async def test_a_caller_speaking_after_the_takeover_gets_no_error_per_frame(
    server: RealtimeServer,
    client: AsyncOpenAI,
    keepers: tuple[callstate.Keeper, callstate.Keeper],
) -> None:
    """Fenced by the store refusing a batch while the caller talks on: the app's loop
    gets one FencedEvent, no StaleEpochError, and nothing more is recorded or sent."""
    a, b = keepers
    s = await a.start(agent="booker")
    server.queue(Say("Hello there."), Say("Still here."))
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        await server.user_speaks("hi")
        await until(conn, of_type("response.done"))
        await s.flush()
        await b.resume(s.id)
        s.user_partial("are you")  # the store refuses this batch: the handle is fenced
        with pytest.raises(callstate.StaleEpochError):
            await s.flush()
        seq = s.state.seq
        sent = len(server.current.received)
        await server.user_speaks("are you there?")
        seen = await read_to_end(conn)
        await conn.send({"type": "response.create"})  # dropped: the call is elsewhere
    assert 1 == len(fenced_events(seen))
    assert isinstance(seen[-1], FencedEvent)
    assert seq == s.state.seq
    assert sent == len(server.sessions[0].received)
    assert 1 == a.observer.counts["session.fenced"]


async def test_after_a_handoff_here_the_fence_watches_the_accepted_session(
    server: RealtimeServer,
    client: AsyncOpenAI,
    keepers: tuple[callstate.Keeper, callstate.Keeper],
) -> None:
    """A handoff in this process fences the old handle without a FencedEvent; a later
    takeover of the accepted one by another keeper gives one, for epoch 2."""
    a, b = keepers
    s = await a.start(agent="booker")
    async with connect(client, s, model=MODEL, config=CONFIG) as conn:
        accepted = await conn.handoff(to="billing", config={"instructions": "You are billing."})
        handed = await until(conn, lambda e: e.type == "callstate.resumed")
        await accepted.flush()
        await b.resume(accepted.id)
        seen = await read_to_end(conn)
    assert [] == fenced_events(handed)
    assert [2] == [e.epoch for e in fenced_events(seen)]
    assert isinstance(seen[-1], FencedEvent)
    assert s.fenced
    assert accepted.fenced


def test_both_speech_to_speech_adapters_export_the_one_fenced_event() -> None:
    """``FencedEvent`` is in each adapter's pinned public surface, one class for both."""
    from callstate.adapters import gemini_live, openai_realtime

    assert [
        "VOICE_NOTE",
        "BadFrame",
        "FencedEvent",
        "RealtimeAdapter",
        "Replay",
        "RestoreStats",
        "ResumedEvent",
        "connect",
        "replay",
    ] == openai_realtime.__all__
    assert [
        "HANDLE_KEY",
        "BadFrame",
        "FencedEvent",
        "GeminiLiveAdapter",
        "GeminiResumed",
        "Playback",
        "connect",
        "replay_turns",
    ] == gemini_live.__all__
    assert openai_realtime.FencedEvent is gemini_live.FencedEvent
