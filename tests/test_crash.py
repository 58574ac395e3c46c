"""Crash safety: a process killed with SIGKILL at random moments loses no acknowledged event.

A helper process imports callstate once and forks one child per trial. Each child
records conversations on a real SQLite file through the real Keeper, and after every
``await flush()`` appends ``<session> <seq>`` to an acks file. The helper SIGKILLs
each child after a random delay. The test then opens every file and checks that each
acknowledged event is there with its content, that every journal is gap-free and
restores to the fold of its events, and that ``PRAGMA integrity_check`` says "ok".
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from callstate.journal.events import decode_event
from callstate.journal.state import fold
from callstate.keeper import restore_state
from callstate.storage.sqlite import SQLiteStore

SEED = 20_240_611  # fixed: the same delays and workloads on every run
TRIALS = 50
PARALLEL = 4  # children alive at once
MAX_DELAY = 0.15  # seconds a child runs before it is killed

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

# The helper: reads one JSON line of trials, forks a child per trial (at most `parallel`
# alive at once), kills each at its moment, reaps it and answers one JSON line of exit
# statuses.
HELPER = r"""
import asyncio, json, os, random, select, signal, sys, time
from callstate import Keeper

def child(db, acks, seed, ready_fd):
    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rng = random.Random(seed)

    def ack(sid, seq):
        os.write(fd, f"{sid} {seq}\n".encode())  # one write: whole line or nothing

    async def main():
        async with Keeper(f"sqlite:///{db}", snapshot_every=rng.randint(3, 12)) as keeper:
            live, made = [], 0
            while True:
                if len(live) < 3:
                    s = await keeper.start(agent="crash", session_id=f"s{made}")
                    made += 1
                    ack(s.id, 1)  # start() returns once the session is durable
                    live.append(s)
                    if made == 1:
                        os.close(ready_fd)  # tells the helper the conversation is on
                for s in live:
                    for _ in range(rng.randint(1, 4)):
                        text = f"{s.id}#{s.state.seq + 1}"
                        pick = rng.random()
                        if pick < 0.5:
                            s.user_said(text)
                        elif pick < 0.8:
                            s.agent_started(text)
                        else:
                            s.user_partial(text)
                await asyncio.gather(*(s.flush() for s in live))
                for s in live:
                    ack(s.id, s.state.seq)
                live = [s for s in live if s.state.seq < 40]

    try:
        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        os._exit(3)  # only reached if the child was not killed in time (or failed)

print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    trials, parallel = request["trials"], request["parallel"]
    queue, running, statuses = list(enumerate(trials)), {}, {}
    while queue or running:
        while queue and len(running) < parallel:  # keep `parallel` children alive
            i, t = queue.pop(0)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                child(t["db"], t["acks"], t["seed"], w)
            os.close(w)
            now = time.monotonic()
            # the kill clock starts at the fork, or once the child's conversation is on
            running[pid] = [i, now + t["delay"] if t["clock"] == "fork" else None, r, now]
        now = time.monotonic()
        deadlines = [e[1] for e in running.values() if e[1] is not None]
        waiting = [e[2] for e in running.values() if e[1] is None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else 1.0
        readable = select.select(waiting, [], [], timeout)[0]
        now = time.monotonic()
        for pid, e in list(running.items()):
            if e[1] is None and (e[2] in readable or now - e[3] > 5):
                e[1] = now + trials[e[0]]["delay"]
            if e[1] is not None and e[1] <= now:
                os.kill(pid, signal.SIGKILL)
                statuses[e[0]] = os.waitpid(pid, 0)[1]
                os.close(e[2])
                del running[pid]
    print(json.dumps([statuses[i] for i in range(len(trials))]), flush=True)
"""


def _acked(path: Path) -> dict[str, int]:
    """The highest acknowledged seq per session, from complete lines only."""
    acked: dict[str, int] = {}
    if not path.exists():
        return acked
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # a line cut by the kill acknowledges nothing
        sid, seq = line.split()
        acked[sid] = max(acked.get(sid, 0), int(seq))
    return acked


def _run_trials(trials: list[dict[str, Any]]) -> tuple[list[int], str]:
    """Run every trial through the helper; returns each child's wait status and stderr."""
    with subprocess.Popen(
        [sys.executable, "-c", HELPER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as helper:
        assert helper.stdin is not None
        assert helper.stdout is not None
        assert helper.stderr is not None
        assert "ready\n" == helper.stdout.readline()
        helper.stdin.write(json.dumps({"trials": trials, "parallel": PARALLEL}) + "\n")
        helper.stdin.flush()
        statuses: list[int] = json.loads(helper.stdout.readline())
        helper.stdin.close()
        return statuses, helper.stderr.read()


async def _check_trial(db: Path, acks: Path) -> tuple[int, list[str]]:
    """Verify one killed child's database; returns (acked events, problems)."""
    acked = _acked(acks)
    problems: list[str] = []
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    try:
        integrity = await store.integrity_check()
        if integrity != "ok":
            problems.append(f"{db.name}: integrity_check says {integrity!r}")
        stored = {r.session_id for r in await store.list_sessions(limit=100_000)}
        for sid in sorted(stored | set(acked)):
            if sid not in stored:
                problems.append(f"{db.name}: acknowledged session {sid} is missing")
                continue
            events = [decode_event(raw) for raw in await store.read_events(sid)]
            seqs = [e.seq for e in events]
            if seqs != list(range(1, len(events) + 1)):
                problems.append(f"{db.name}: {sid} journal seqs are {seqs}")
            if len(events) < acked.get(sid, 0):
                problems.append(f"{db.name}: {sid} has {len(events)} events, {acked[sid]} acked")
            wrong = [
                e.seq
                for e in events
                if hasattr(e, "text") and getattr(e, "text", None) != f"{sid}#{e.seq}"
            ]
            if wrong:
                problems.append(f"{db.name}: {sid} events {wrong} hold the wrong text")
            if restore_state(await store.load(sid)) != fold(events):
                problems.append(f"{db.name}: {sid} snapshot + tail differs from its journal")
    finally:
        await store.close()
    return sum(acked.values()), problems


async def test_sigkill_at_random_moments_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Across 50 SIGKILLed writers every flushed event survives and every file is intact."""
    rng = random.Random(SEED)
    # most files start migrated (as after a first run); the rest are created by the child,
    # so some kills land inside the migration itself
    template = tmp_path / "template.db"
    store = SQLiteStore(f"sqlite:///{template}")
    await store.open()
    await store.close()
    trials: list[dict[str, Any]] = []
    for i in range(TRIALS):
        fresh = rng.random() < 0.2
        trials.append(
            {
                "db": str(tmp_path / f"crash{i}.db"),
                "acks": str(tmp_path / f"crash{i}.acks"),
                "seed": rng.randrange(2**32),
                # fresh files die while opening or migrating; the rest mid-conversation
                "clock": "fork" if fresh else "ready",
                "delay": rng.uniform(0.0, MAX_DELAY / 2 if fresh else MAX_DELAY),
            }
        )
        if not fresh:
            shutil.copyfile(template, trials[-1]["db"])
    statuses, errors = await asyncio.to_thread(_run_trials, trials)
    killed = [os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses]
    assert [True] * TRIALS == killed, f"a child ended on its own:\n{errors}"

    total = 0
    problems: list[str] = []
    for t in trials:
        acked, found = await _check_trial(Path(t["db"]), Path(t["acks"]))
        total += acked
        problems += found
    assert [] == problems
    # the kills must have landed mid-conversation, not only before the first flush
    assert sum(1 for t in trials if _acked(Path(t["acks"]))) >= TRIALS // 2
    assert total >= 10 * TRIALS
