"""Kill-point tests' tools: a store on each backend, and a child process that plays one
role (the offering source, an acceptor, a caller hanging up) and SIGKILLs itself at a
named kill point (``CALLSTATE_KILL_AT``, see ``callstate.storage.killpoints``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.storage.killpoints import KILL_AT_ENV
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

SECRET = "killpoint-secret-0123456789abcdef"
CALLER = "+15550104477"
GRACE = 60.0  # seconds after a leg closes that its follow-up is due

# One role, then exit 0; a kill point on the way ends it with SIGKILL instead. Every line
# it prints is flushed at once, so the parent reads what it did before the kill.
CHILD = """
import asyncio, json, sys
import callstate

GRACE = %r

def say(*words):
    sys.stdout.write(" ".join(words) + "\\n")
    sys.stdout.flush()

async def main(role, url, options, secret, arg):
    store = callstate.open_store(url, **json.loads(options))
    async with callstate.Keeper(store, secret=secret, owner=role, sweep_every=None) as keeper:
        if role == "source":
            s = await keeper.start(agent="triage", caller=arg)
            s.user_said("my invoice is wrong")
            await s.flush()
            say("session", s.id)
            await s.handoff(to="billing", reason="billing question")
        elif role == "acceptor":
            await keeper.accept(arg, agent="billing")
        elif role == "caller":
            keeper.on_call_complete(lambda call: None, name="summary", grace=GRACE)
            s = await keeper.start(agent="support", caller=arg)
            say("session", s.id)
            s.user_said("open a bug about the thumbnails")
            await s.end("hangup")
    say("done")

asyncio.run(main(*sys.argv[1:]))
"""


@dataclass
class Backend:
    """One fresh namespace of one backend: a URL and the options that select it."""

    kind: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def store(self) -> callstate.Store:
        """A new (unopened) store on this namespace."""
        return callstate.open_store(self.url, **self.options)


@dataclass
class Died:
    """What a child printed before its kill point, and how it ended."""

    returncode: int
    lines: list[list[str]]

    def value(self, key: str) -> str:
        """The word printed after ``key`` (e.g. the session id after ``session``)."""
        return next(words[1] for words in self.lines if words[0] == key)


@contextlib.asynccontextmanager
async def namespace(kind: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A namespace of its own on backend ``kind`` (dropped afterwards)."""
    if kind == "sqlite":
        yield Backend(kind, f"sqlite:///{tmp_path}/killpoints.db")
    elif kind == "redis":
        url, prefix = redis_url(), unique("killpoints")
        yield Backend(kind, url, {"prefix": prefix})
        await drop_redis_prefix(url, prefix)
    else:
        url, schema = postgres_url(), unique("killpoints")
        yield Backend(kind, url, {"schema": schema})
        await drop_pg_schema(url, schema)


async def run_child(tmp_path: Path, backend: Backend, role: str, arg: str, point: str) -> Died:
    """Run ``role`` in a child process armed to die at ``point``; fails unless it did."""
    script = tmp_path / "killpoint_child.py"
    script.write_text(CHILD % GRACE)
    env = {**os.environ, KILL_AT_ENV: point}
    options = json.dumps(backend.options)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, str(script), role, backend.url, options, SECRET, arg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    lines = [line.split() for line in out.decode().splitlines() if line.strip()]
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(f"{role} was not killed at {point}: {proc.returncode} {err.decode()[-2000:]}")
    return Died(proc.returncode, lines)
