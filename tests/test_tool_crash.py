"""SIGKILL inside a tool, then resume: the in-doubt policy holds for every kill point.

A child process (``sys.executable``) imports callstate once and forks one worker per
trial. Each worker runs a keeper on its own real SQLite file and calls a tool whose side
effect is an append to a file (non-idempotent write), an upsert keyed by
``ctx.idempotency_key`` into a small SQLite table (idempotent write), or nothing (read).
The test kills the worker with SIGKILL at a seeded random moment after it entered the
tool, then resumes the session in a fresh keeper here and checks the invariants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import callstate

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

TRIALS = 50  # per policy
PARALLEL = 4
SEED = 20240917
BEFORE_S, AFTER_S = 0.010, 0.020  # inside the tool: before and after the side effect

ZYGOTE = r"""
import asyncio, json, os, signal, sqlite3, sys
import callstate

children = {}

def say(line):
    os.write(1, (line + "\n").encode())

def reap(signum, frame):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        say(f"EXIT {children.pop(pid, '?')} {status}")

def effect(p, ctx):
    if p["policy"] == "once":
        fd = os.open(p["effects"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{ctx.idempotency_key} {ctx.attempt}\n".encode())
        os.close(fd)
    elif p["policy"] == "idem":
        db = sqlite3.connect(p["effects"])
        db.execute("CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY, attempt INT)")
        db.execute("INSERT OR IGNORE INTO applied VALUES (?, ?)", (ctx.idempotency_key, ctx.attempt))
        db.commit()
        db.close()

async def trial(tid, p):
    tools = callstate.ToolRegistry()

    @tools.tool(name="act", effect="read" if p["policy"] == "read" else "write",
                idempotent=p["policy"] == "idem")
    async def act(n, *, ctx):
        say(f"INSIDE {tid}")
        await ctx.checkpoint({"entered": ctx.attempt})
        await asyncio.sleep(p["before"])
        effect(p, ctx)
        await asyncio.sleep(p["after"])
        return {"n": n}

    async with callstate.Keeper(f"sqlite:///{p['db']}", tools=tools) as keeper:
        s = await keeper.start(session_id=p["sid"])
        s.user_said("please do it")
        out = await s.run_tool("act", {"n": 1}, call_id="c1")
        say(f"DONE {tid} {out.status}")
        await asyncio.Event().wait()  # until killed

signal.signal(signal.SIGCHLD, reap)
say("READY")
for line in sys.stdin:
    tid, raw = line.split(" ", 1)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            asyncio.run(trial(tid, json.loads(raw)))
        except BaseException as exc:
            say(f"ERROR {tid} {exc!r}")
        os._exit(1)
    children[pid] = tid
    say(f"PID {tid} {pid}")
for pid in list(children):
    os.kill(pid, signal.SIGKILL)
"""


class Zygote:
    """The forking child process and a dispatcher of its output lines by trial id."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.inbox: dict[str, asyncio.Queue[tuple[str, str]]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            kind, tid, *rest = [*raw.decode().strip().split(" ", 2), ""]
            if kind in ("PID", "INSIDE", "DONE", "EXIT", "ERROR"):
                self.inbox.setdefault(tid, asyncio.Queue()).put_nowait((kind, rest[0].strip()))

    async def expect(self, tid: str, *kinds: str) -> tuple[str, str]:
        queue = self.inbox.setdefault(tid, asyncio.Queue())
        while True:
            kind, rest = await asyncio.wait_for(queue.get(), 60)
            assert "ERROR" != kind, f"trial {tid} failed in the child: {rest}"
            if kind in kinds:
                return kind, rest

    def run(self, tid: str, params: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{tid} {json.dumps(params)}\n".encode())


@pytest.fixture
async def zygote(tmp_path: Path) -> AsyncIterator[Zygote]:
    """A child interpreter that forks one worker per trial."""
    script = tmp_path / "zygote.py"
    script.write_text(ZYGOTE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert b"READY\n" == await asyncio.wait_for(proc.stdout.readline(), 60)
    z = Zygote(proc)
    try:
        yield z
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 30)
        z.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await z.reader


def _applied(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return list(db.execute("SELECT key, attempt FROM applied"))
    except sqlite3.OperationalError:  # killed before the table existed
        return []
    finally:
        db.close()


def _appended(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class Observed:
    """What one trial saw, for the checks across trials."""

    def __init__(self) -> None:
        self.crashed_in_doubt = 0  # killed after the intent was durable, before the result
        self.effect_then_crash = 0  # ... and after the side effect happened
        self.progress_seen = 0  # re-runs that saw a checkpoint of the killed attempt


async def _one_trial(
    z: Zygote, tmp_path: Path, policy: str, i: int, rng: random.Random, seen: Observed
) -> None:
    tid = f"{policy}{i}"
    db, sid = tmp_path / f"{tid}.db", f"s-{tid}"
    effects = tmp_path / (f"{tid}.effects.db" if policy == "idem" else f"{tid}.effects")
    z.run(
        tid,
        {
            "policy": policy,
            "db": str(db),
            "sid": sid,
            "effects": str(effects),
            "before": BEFORE_S,
            "after": AFTER_S,
        },
    )
    _, pid = await z.expect(tid, "PID")
    await z.expect(tid, "INSIDE")
    # a seeded random point: before, during or after the side effect, or after the end
    await asyncio.sleep(rng.uniform(0, 1.6 * (BEFORE_S + AFTER_S)))
    os.kill(int(pid), signal.SIGKILL)
    await z.expect(tid, "EXIT")

    runs: list[tuple[int, dict[str, Any]]] = []
    tools = callstate.ToolRegistry()

    @tools.tool(
        name="act", effect="read" if policy == "read" else "write", idempotent=policy == "idem"
    )
    async def act(n: int, *, ctx: callstate.ToolContext) -> dict[str, int]:
        runs.append((ctx.attempt, dict(ctx.progress)))
        if policy == "once":
            with effects.open("a") as f:
                f.write(f"{ctx.idempotency_key} {ctx.attempt}\n")
        elif policy == "idem":
            conn = sqlite3.connect(effects)
            conn.execute("CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY, attempt INT)")
            conn.execute(
                "INSERT OR IGNORE INTO applied VALUES (?, ?)", (ctx.idempotency_key, ctx.attempt)
            )
            conn.commit()
            conn.close()
        return {"n": n}

    async with callstate.Keeper(f"sqlite:///{db}", tools=tools) as keeper:
        crashed = (await keeper.load(sid)).calls.get("c1")
        assert crashed is not None, f"{tid}: the call vanished; its intent was not durable"
        assert crashed.status in ("started", "succeeded"), f"{tid}: {crashed.status}"
        effects_at_crash = _appended(effects) if policy == "once" else _applied(effects)
        s = await keeper.resume(sid)
        out = await s.run_tool("act", {"n": 1}, call_id="c1")  # awaits a re-run, never a 2nd
        key = s.state.calls["c1"].idempotency_key
        await s.end()
    if crashed.status == "started":
        seen.crashed_in_doubt += 1
        seen.effect_then_crash += bool(effects_at_crash)
        [decision] = s.in_doubt
    if policy == "once":
        lines = _appended(effects)
        assert 1 >= len(lines), f"{tid}: the non-idempotent write ran {len(lines)} times"
        assert effects_at_crash == lines, f"{tid}: resume re-ran a non-idempotent write"
        assert [] == runs
        expected = "unknown" if crashed.status == "started" else "succeeded"
        assert expected == out.status, tid
        if crashed.status == "started":
            assert ("unknown", True) == (decision.action, out.deduplicated)
    elif policy == "idem":
        assert [(key, 1 if not runs or effects_at_crash else 2)] == _applied(effects), tid
        assert "succeeded" == out.status, tid
        if crashed.status == "started":
            assert ("rerun", 2) == (decision.action, decision.attempt)
            assert [2] == [attempt for attempt, _ in runs]
            if crashed.progress:
                assert {"entered": 1} == runs[0][1], f"{tid}: the re-run lost the checkpoint"
                seen.progress_seen += 1
    else:
        assert "succeeded" == out.status, tid
        assert (1 if crashed.status == "started" else 0) == len(runs), tid


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["once", "idem", "read"])
async def test_sigkill_inside_a_tool_then_resume(
    zygote: Zygote, tmp_path: Path, policy: str
) -> None:
    """50 kills at random points: a non-idempotent write never exceeds one effect and is
    never re-run; an idempotent write is applied exactly once; a read is re-run."""
    rng = random.Random(f"{SEED}-{policy}")
    delays = [random.Random(rng.random()) for _ in range(TRIALS)]
    seen = Observed()
    gate = asyncio.Semaphore(PARALLEL)

    async def one(i: int) -> None:
        async with gate:
            await _one_trial(zygote, tmp_path, policy, i, delays[i], seen)

    await asyncio.gather(*(one(i) for i in range(TRIALS)))
    # the kills must have hit the window that matters, or the trials proved little
    assert seen.crashed_in_doubt > 0
    if policy != "read":
        assert seen.effect_then_crash > 0
    if policy == "idem":
        assert seen.progress_seen > 0
