"""Recovery events: callback sinks, ``keeper.events()``, the JSONL sink, isolation, stats."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import callstate
from callstate.observe.recovery import JsonlSink, Observer, RecoveryEvent, percentiles
from callstate.testing import CapturingSink, FakeClock


def _event(kind: str = "link.lost", latency: float | None = None) -> RecoveryEvent:
    return RecoveryEvent(kind=kind, session_id="s", at=1.0, latency_ms=latency)  # type: ignore[arg-type]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


async def test_callback_sinks_get_every_event_in_order(url: str) -> None:
    """Sync and async callables given to Keeper(sinks=...) receive each event in order."""
    got_async: list[str] = []

    async def async_sink(e: RecoveryEvent) -> None:
        got_async.append(e.kind)

    capture = CapturingSink()
    async with callstate.Keeper(url, sinks=[capture, async_sink]) as k:
        s = await k.start()
        s.connection_lost()
        s.connection_restored()
        await asyncio.wait_for(capture.wait_for("link.restored"), timeout=10)
        await k.observer.drain()
    expected = ["session.started", "link.lost", "link.restored", "session.released"]
    assert expected == capture.kinds() == got_async


async def test_a_raising_sink_is_isolated_and_counted(url: str) -> None:
    """A sink that raises never reaches the call path; others still get the event."""

    def broken(e: RecoveryEvent) -> None:
        raise ValueError("sink bug")

    capture = CapturingSink()
    async with callstate.Keeper(url, sinks=[broken, capture]) as k:
        s = await k.start()
        s.connection_lost()
        s.connection_restored()
        await k.observer.drain()
        expected = ["session.started", "link.lost", "link.restored"]
        assert (3, expected) == (k.stats().sink_errors, capture.kinds())


async def test_events_stream_follows_every_event(url: str) -> None:
    """``async for ev in keeper.events()`` sees events emitted after it subscribed."""
    async with callstate.Keeper(url) as k:
        stream = k.events()
        s = await k.start()
        s.connection_lost()
        s.connection_restored()
        kinds = []
        async for e in stream:
            kinds.append(e.kind)
            if len(kinds) == 3:
                break
    assert ["session.started", "link.lost", "link.restored"] == kinds


async def test_streams_end_when_the_keeper_closes(url: str) -> None:
    """A reader waiting on keeper.events() finishes when the keeper closes."""
    k = callstate.Keeper(url)
    await k.open()
    seen: list[str] = []

    async def read() -> None:
        async for e in k.events():
            seen.append(e.kind)

    reader = asyncio.create_task(read())
    s = await k.start()
    s.connection_lost()
    await k.observer.drain()
    await k.close()
    await asyncio.wait_for(reader, timeout=10)
    assert ["session.started", "link.lost", "session.released"] == seen


async def test_a_slow_reader_loses_the_oldest_and_it_is_counted() -> None:
    """A stream that falls behind keeps the newest events; drops show in stats."""
    obs = Observer(stream_size=2)
    obs.start()
    stream = obs.stream()
    for i in range(5):
        obs.emit(_event(latency=float(i)))
    await obs.drain()
    got = [(await stream.__anext__()).latency_ms for _ in range(2)]
    assert ([3.0, 4.0], 3) == (got, obs.stats().stream_dropped)
    await obs.stop()


async def test_jsonl_sink_writes_one_line_per_event(url: str, tmp_path: Path) -> None:
    """JsonlSink appends each event as a JSON line with its kind and data."""
    path = tmp_path / "events.jsonl"
    async with callstate.Keeper(url, sinks=[JsonlSink(path)], clock=FakeClock()) as k:
        s = await k.start()
        s.connection_lost(reason="wifi")
        await k.observer.drain()
    (_, line, _) = path.read_text().splitlines()  # started, link.lost, released
    assert {"kind": "link.lost", "session_id": s.id, "reason": "wifi"} == {
        "kind": json.loads(line)["kind"],
        "session_id": json.loads(line)["session_id"],
        "reason": json.loads(line)["data"]["reason"],
    }


async def test_add_and_remove_sink(url: str) -> None:
    """add_sink starts delivery and remove_sink stops it."""
    capture = CapturingSink()
    async with callstate.Keeper(url) as k:
        k.add_sink(capture)
        s = await k.start()
        s.connection_lost()
        await k.observer.drain()
        k.remove_sink(capture)
        s.connection_restored()
        await k.observer.drain()
    assert ["session.started", "link.lost"] == capture.kinds()


def test_stats_count_kinds_and_time_to_recover() -> None:
    """stats() counts by kind and gives nearest-rank percentiles of resume latencies."""
    obs = Observer()
    for ms in range(1, 101):
        obs.emit(_event("session.resumed", float(ms)))
    obs.emit(_event("link.lost"))
    stats = obs.stats()
    assert {"session.resumed": 100, "link.lost": 1} == stats.counts
    assert (100, 50.0, 95.0, 99.0) == (
        stats.time_to_recover.count,
        stats.time_to_recover.p50,
        stats.time_to_recover.p95,
        stats.time_to_recover.p99,
    )


def test_percentiles_of_nothing_are_none() -> None:
    """An empty sample has count 0 and no percentiles."""
    assert (0, None) == (percentiles([]).count, percentiles([]).p99)
