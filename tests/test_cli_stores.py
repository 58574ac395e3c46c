"""Every command takes any store for ``--db``: a SQLite path or a ``sqlite:///``,
``redis://`` or ``postgresql://`` URL, run as the real command against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callstate
from callstate.cli.demo import DEMO_SECRET
from callstate.testing import FakeClock
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

CALLER = "+15551234567"
SECRET = b"s" * 32  # seals the caller at rest; the commands read it from CALLSTATE_SECRET
ASKED = "Can you open a bug about the thumbnails?"


def _cli(*args: str, cwd: Path, secret: bytes = SECRET) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callstate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", "CALLSTATE_SECRET": secret.decode()},
        check=False,
    )


@pytest.fixture(params=["path", "sqlite", "redis", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """What ``--db`` is given: a path, or a URL of a fresh database, prefix or schema."""
    if request.param == "path":
        yield "calls.db"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/calls.db"
    elif request.param == "redis":
        url, prefix = redis_url(), unique("cli")
        yield f"{url}?prefix={prefix}"
        await drop_redis_prefix(url, prefix)
    else:
        url, schema = postgres_url(), unique("cli")
        yield f"{url}?schema={schema}"
        await drop_pg_schema(url, schema)


async def _one_call(db: str, cwd: Path) -> str:
    url = db if "://" in db else f"sqlite:///{cwd / db}"
    async with callstate.Keeper(url, secret=SECRET, clock=FakeClock(), sweep_every=None) as k:
        k.on_call_complete(lambda call: {"ticket": "BUG-7"}, grace=0, name="tickets")
        s = await k.start(caller=CALLER, agent="support", session_id=unique("call"))
        s.user_said(ASKED)
        await s.end(reason="caller_hangup")
        assert 1 == (await k.sweep()).followups
    return s.id


async def test_every_reading_command_takes_the_store_url(db: str, tmp_path: Path) -> None:
    """sessions, inspect, archive list, show, call and export read the call (and what
    its follow-up returned) through ``--db``."""
    sid = await _one_call(db, tmp_path)

    def run(*args: str) -> str:
        result = _cli(*args, "--db", db, cwd=tmp_path)
        assert 0 == result.returncode, result.stdout + result.stderr
        return result.stdout

    sessions, inspected, listed, shown, call, exported = await asyncio.gather(
        asyncio.to_thread(run, "sessions"),
        asyncio.to_thread(run, "inspect", sid),
        asyncio.to_thread(run, "archive", "list"),
        asyncio.to_thread(run, "archive", "show", f"{sid}:1"),
        asyncio.to_thread(run, "archive", "call", sid),
        asyncio.to_thread(run, "archive", "export", str(tmp_path / "out")),
    )
    assert sid in sessions
    assert ASKED in inspected
    assert f"{sid}:1" in listed
    assert "completed" in listed
    assert ASKED in shown
    assert ASKED in call
    assert f"{sid}:1" in call
    assert "{'ticket': 'BUG-7'}" in call
    assert "exported 1 call record(s)" in exported
    (path,) = (tmp_path / "out").iterdir()
    assert f"{sid}:1" == json.loads(path.read_text())["record_id"]


async def test_the_demo_runs_on_the_store_url(db: str, tmp_path: Path) -> None:
    """The demo, its crashing child process included, runs on the store ``--db`` names."""
    result = await asyncio.to_thread(_cli, "demo", "--db", db, cwd=tmp_path)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "problem:" not in result.stdout
    listed = await asyncio.to_thread(
        _cli, "archive", "list", "--db", db, cwd=tmp_path, secret=DEMO_SECRET
    )
    assert "abandoned" in listed.stdout


def test_a_store_url_of_an_unknown_kind_fails_naming_it(tmp_path: Path) -> None:
    """A URL with an unknown scheme is refused with the URL in the message."""
    result = _cli("sessions", "--db", "mongodb://127.0.0.1/x", cwd=tmp_path)
    assert (1, "") == (result.returncode, result.stdout)
    assert "mongodb://127.0.0.1/x" in result.stderr


async def _health_calls(db: str, cwd: Path) -> tuple[dict[str, str], str]:
    """Three calls ended just now: a hang-up, a failed tool call, a resumed drop."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def lookup() -> dict[str, str]:
        raise RuntimeError("backend down")

    url = db if "://" in db else f"sqlite:///{cwd / db}"
    clock = FakeClock(start=time.time() - 60)
    ids: dict[str, str] = {}
    async with callstate.Keeper(
        url, secret=SECRET, clock=clock, tools=tools, sweep_every=None
    ) as k:
        hung_up = await k.start(caller=CALLER, session_id=unique("hangup"))
        await hung_up.end(reason="caller_hangup")
        failed = await k.start(session_id=unique("failed"))
        await failed.run_tool("lookup", {}, call_id="c1")
        await failed.end(reason="resolved")
        dropped = await k.start(session_id=unique("dropped"))
        dropped.connection_lost("network switch")
        await dropped.flush()
        back = await k.resume(dropped.resume_token())
        await back.end(reason="resolved")
        ids = {"hangup": hung_up.id, "failed": failed.id, "dropped": dropped.id}
        tag = k.host.caller_hash(CALLER)
    assert tag is not None
    return ids, tag[:10]


def _counts(out: str) -> dict[str, int]:
    rows = [line.split() for line in out.splitlines()]
    return {r[0]: int(r[1]) for r in rows if len(r) == 3 and r[2].endswith("%")}


async def test_health_and_archive_filters_read_every_store(db: str, tmp_path: Path) -> None:
    """``health --since 1h`` counts legs per class and lists the failed call; ``archive
    list`` shows health, the caller's hash (never the number), legs and follow-ups, and
    filters by --health, --since and --caller."""
    ids, tag = await _health_calls(db, tmp_path)

    def run(*args: str) -> str:
        result = _cli(*args, "--db", db, cwd=tmp_path)
        assert 0 == result.returncode, result.stdout + result.stderr
        return result.stdout

    health, failed, mine, old = await asyncio.gather(
        asyncio.to_thread(run, "health", "--since", "1h"),
        asyncio.to_thread(run, "archive", "list", "--health", "failed"),
        asyncio.to_thread(run, "archive", "list", "--since", "1h", "--caller", CALLER),
        asyncio.to_thread(run, "archive", "list", "--since", "1s"),
    )
    counts = _counts(health)
    assert (1, 1, 1, 1, 0) == (
        counts["failed"],
        counts["caller_ended"],
        counts["recovered"],
        counts["superseded"],
        counts["ok"],
    )
    assert "failed: 1 failed tool call(s)" in health
    assert f"{ids['failed']}:1" in health.split("worst")[1]
    assert f"{ids['failed']}:1" in failed
    assert ids["hangup"] not in failed
    assert f"{ids['hangup']}:1" in mine
    assert ids["failed"] not in mine
    assert tag in mine
    assert CALLER not in mine
    assert "no archived calls" in old
    listed = run("archive", "list", "--session", ids["dropped"])
    row = next(line for line in listed.splitlines() if f"{ids['dropped']}:2" in line)
    assert ["recovered", "recovered", "-", "2"] == row.split()[1:5]


def test_a_bad_since_is_refused_naming_it(tmp_path: Path) -> None:
    """``--since soon`` fails with a message naming --since and the value."""
    result = _cli("health", "--since", "soon", "--db", "x.db", cwd=tmp_path)
    assert 1 == result.returncode
    assert "--since" in result.stderr
    assert "'soon'" in result.stderr


async def test_stats_reads_fleet_figures_from_every_store(db: str, tmp_path: Path) -> None:
    """``stats --since 1h`` prints the window's legs, calls, recovered rate, legs per
    health class and the time to recover, counted by the store."""
    await _health_calls(db, tmp_path)
    result = await asyncio.to_thread(_cli, "stats", "--since", "1h", "--db", db, cwd=tmp_path)
    assert 0 == result.returncode, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["4", "3", "33.3%", "0.0%"] in lines
    assert {"caller_ended": "1", "failed": "1", "recovered": "1", "superseded": "1"} == {
        r[0]: r[1]
        for r in lines
        if len(r) == 2 and r[0] in ("caller_ended", "failed", "recovered", "superseded", "ok")
    }
    assert ["time", "to", "recover", "1"] == next(r for r in lines if r[:2] == ["time", "to"])[:4]
