"""Fleet figures from the store: keeper.fleet_stats on memory, SQLite, Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callstate
from callstate.archive.fleet import FleetStats, Percentiles, from_figures, percentiles
from callstate.errors import ConfigError
from callstate.storage.figures import Figures
from callstate.storage.histogram import RELATIVE_ERROR
from callstate.testing import FakeClock
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

SECRET = b"fleet-stats-secret-32-bytes-long"


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh store of each kind."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cs.db"
    elif request.param == "redis":
        base, prefix = redis_url(), unique("fleet")
        yield f"{base}?prefix={prefix}"
        await drop_redis_prefix(base, prefix)
    else:
        base, schema = postgres_url(), unique("fleet")
        yield f"{base}?schema={schema}"
        await drop_pg_schema(base, schema)


async def test_fleet_stats_read_the_window_from_the_store(url: str) -> None:
    """Legs closed since the mark are counted per class; the recovered rate, the time to
    recover and the follow-up lag come from the store; older legs are left out."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def lookup() -> dict[str, str]:
        raise RuntimeError("backend down")

    clock = FakeClock()
    async with callstate.Keeper(
        url, secret=SECRET, clock=clock, tools=tools, sweep_every=None
    ) as k:
        k.on_call_complete(lambda call: None, grace=10, name="notes")
        before = await k.start()
        await before.end(reason="resolved")  # closed before the window
        clock.advance(100)
        since = clock.now()
        ok = await k.start()
        await ok.end(reason="resolved")
        failed = await k.start()
        await failed.run_tool("lookup", {}, call_id="c1")
        await failed.end(reason="resolved")
        dropped = await k.start()
        dropped.connection_lost("network switch")
        await dropped.flush()
        clock.advance(5)
        back = await k.resume(dropped.resume_token())
        await back.end(reason="caller_hangup")
        clock.advance(13)  # follow-ups due 10 s after each close: run 8, 8 and 3 s late
        await k.sweep()
        stats = await k.fleet_stats(since=since)
    assert {"failed": 1, "ok": 1, "recovered": 1, "superseded": 1} == stats.health
    assert (4, 3) == (stats.legs, stats.calls)
    assert pytest.approx(1 / 3) == stats.recovered_rate
    assert Percentiles(count=1, p50=5.0, p90=5.0, p99=5.0, max=5.0) == stats.time_to_recover
    lag = stats.followup_lag
    assert lag is not None
    assert (3, 8.0) == (lag.count, lag.max)  # exact; percentiles rolled up within 1%
    for got in (lag.p50, lag.p90, lag.p99):
        assert 8.0 == pytest.approx(got, rel=RELATIVE_ERROR)
    assert (since, 0.0) == (stats.since, stats.in_doubt_rate)


def test_figures_become_rates_and_nearest_rank_percentiles() -> None:
    """from_figures: calls leave out superseded legs; rates are shares; percentiles use
    the nearest rank; an empty window has no percentiles and zero rates."""
    figures = Figures(
        legs={"recovered": 2, "superseded": 2, "ok": 6},
        with_tools=4,
        with_in_doubt=1,
        recover_s=[float(s) for s in range(1, 101)],
    )
    stats = from_figures(figures, since=0.0, until=1.0)
    assert (10, 8, 0.25, 0.25) == (
        stats.legs,
        stats.calls,
        stats.recovered_rate,
        stats.in_doubt_rate,
    )
    assert Percentiles(count=100, p50=50.0, p90=90.0, p99=99.0, max=100.0) == stats.time_to_recover
    assert None is stats.followup_lag
    empty = from_figures(Figures(), since=0.0, until=1.0)
    assert (
        FleetStats(
            since=0.0,
            until=1.0,
            legs=0,
            calls=0,
            health={},
            recovered_rate=0.0,
            in_doubt_rate=0.0,
            time_to_recover=None,
            followup_lag=None,
        )
        == empty
    )
    assert None is percentiles([])


async def test_a_since_after_now_is_refused_naming_it() -> None:
    """fleet_stats(since=) in the future is a ConfigError naming since and the value."""
    clock = FakeClock()
    async with callstate.Keeper("memory://", secret=SECRET, clock=clock, sweep_every=None) as k:
        with pytest.raises(ConfigError, match=r"since must be before until .* got 1e\+20"):
            await k.fleet_stats(since=1e20)
