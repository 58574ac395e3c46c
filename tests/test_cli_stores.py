"""Every command takes any store for ``--db``: a SQLite path or a ``sqlite:///``,
``redis://`` or ``postgresql://`` URL, run as the real command against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
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
