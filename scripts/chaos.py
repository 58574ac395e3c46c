"""Chaos run: workers making calls with tool calls are SIGKILLed at random, the store's
replies are dropped, the store is restarted; then the invariants are checked.

    python scripts/chaos.py --store redis://127.0.0.1:6379/0 --duration 60
    python scripts/chaos.py --store postgresql://127.0.0.1:5432/test --drop 0.03
    python scripts/chaos.py --store sqlite:///tmp/chaos.db --workers 3
    python scripts/chaos.py --store redis://127.0.0.1:7000/0 --restart-cmd "redis-cli -p 7000 shutdown nosave; redis-server --port 7000 --daemonize yes"

Each worker owns calls: it starts or takes over a session, records turns, runs a
non-idempotent write (``charge_card``), an idempotent one (``book_table``) and a read
(``check_availability``) and flushes after every turn. Every tool execution appends a
line to an effects log (the "outside world"), every acknowledged flush to an ack log,
every follow-up run to a follow-up log: each fsynced before it is acted on. The
supervisor kills a random worker every ``--kill-every`` seconds and starts a new one,
which takes over the sessions the dead one left (by id, from the store). With
``--drop`` the workers reach a Redis or PostgreSQL store through
``callstate.testing.faultproxy.FaultProxy``, which drops that share of replies (the
server applied the command) and resets connections.

At the end one keeper takes over every session still open, lets in-doubt calls
resolve, ends them and runs the follow-ups; then these invariants are checked and
printed with their counts (exit status 1 when one fails):

- acknowledged events lost: an event whose flush returned is missing from the journal;
- duplicate non-idempotent writes: ``charge_card`` ran twice for one call;
- calls without one outcome: a call that is not terminal, or has two terminal events;
- follow-ups run twice: a follow-up that completed twice for one call record.

Keys go under a fresh Redis prefix or PostgreSQL schema (``?prefix=`` / ``?schema=``),
removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import callstate
from callstate.journal import events as ev
from callstate.journal.state import TERMINAL

SECRET = b"callstate-chaos-run-secret-0123456789"
LINES = [
    "Hi, I'd like to book a table for four on Friday evening, around eight if possible.",
    "Could you also charge the deposit to the card ending in 4242, please?",
    "Actually, is there anything free on Saturday instead? Friday might not work.",
    "Great, let's go with that. And please send me a confirmation by text message.",
]


def _append(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it: written before the worker acts on it."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut by SIGKILL
            out.append(json.loads(line))
    return out


def _tools(work: Path, who: str) -> callstate.ToolRegistry:
    tools = callstate.ToolRegistry()
    effects = work / "effects.log"

    @tools.tool(effect="write")
    async def charge_card(amount: int, *, ctx: callstate.ToolContext) -> dict[str, Any]:
        """Charge the deposit (not idempotent: a second run charges twice)."""
        _append(
            effects,
            {"tool": "charge_card", "session": ctx.session_id, "call": ctx.call_id, "by": who},
        )
        await asyncio.sleep(random.uniform(0, 0.05))
        return {"charged": amount, "currency": "EUR", "receipt": uuid.uuid4().hex[:10]}

    @tools.tool(effect="write", idempotent=True)
    async def book_table(day: str, party: int, *, ctx: callstate.ToolContext) -> dict[str, Any]:
        """Book the table (idempotent by ``ctx.idempotency_key``)."""
        _append(
            effects,
            {
                "tool": "book_table",
                "session": ctx.session_id,
                "key": ctx.idempotency_key,
                "by": who,
            },
        )
        await asyncio.sleep(random.uniform(0, 0.05))
        return {"booking": ctx.idempotency_key[:8], "day": day, "party": party, "time": "20:00"}

    @tools.tool(effect="read")
    async def check_availability(day: str) -> dict[str, Any]:
        """Free slots on ``day``."""
        await asyncio.sleep(random.uniform(0, 0.02))
        return {"day": day, "slots": ["19:30", "20:00", "21:15"]}

    return tools


async def _on_complete(work: Path, record: Any) -> None:
    _append(work / "followups.log", {"record": record.record_id, "phase": "start"})
    await asyncio.sleep(random.uniform(0, 0.02))
    _append(work / "followups.log", {"record": record.record_id, "phase": "done"})


def _keeper(url: str, work: Path, who: str, *, lease: float) -> callstate.Keeper:
    keeper = callstate.Keeper(
        url,
        secret=SECRET,
        tools=_tools(work, who),
        lease_ttl=lease,
        sweep_every=0.5,
        resume_window=3600.0,
    )
    keeper.on_call_complete(lambda r: _on_complete(work, r), grace=0.0, name="chaos-followup")
    return keeper


async def _call(
    keeper: callstate.Keeper, session: callstate.Session, work: Path, turns: int
) -> None:
    acks = work / "acks.log"
    for _ in range(turns):
        n = session.state.turn
        text = f"{LINES[n % len(LINES)]} (turn {n})"
        session.user_said(text)
        if n % 3 == 0:
            await session.run_tool("check_availability", {"day": "friday"})
        elif n % 3 == 1:
            await session.run_tool("book_table", {"day": "friday", "party": 4})
        else:
            await session.run_tool("charge_card", {"amount": 40})
        u = session.agent_started("Done. Is there anything else I can help you with today?")
        session.agent_progress(u, spoken_text="Done.")
        session.agent_finished(u)
        await session.flush()
        _append(acks, {"session": session.id, "seq": session.state.seq, "text": text})
    if random.random() < 0.5:
        await session.end("caller_hangup")


async def worker(url: str, work: Path, who: str, lease: float, turns: int) -> None:
    """Make calls until killed: take over sessions left open, or start new ones."""
    async with _keeper(url, work, who, lease=lease) as keeper:
        while True:
            session: callstate.Session | None = None
            for rec in await keeper.store.list_sessions(
                statuses=["active"], lease_before=time.time(), limit=20
            ):
                with contextlib.suppress(callstate.CallstateError):
                    session = await keeper.resume(rec.session_id, via="takeover")
                    break
            if session is None:
                session = await keeper.start(
                    agent="chaos", caller=f"+1555{random.randrange(10**6):06d}"
                )
            with contextlib.suppress(callstate.CallstateError):
                await _call(keeper, session, work, turns)
            with contextlib.suppress(callstate.CallstateError):
                await session.close()


async def settle(url: str, work: Path) -> list[str]:
    """Take over every session still open, let in-doubt calls resolve, end them all,
    run the follow-ups; returns every session id of the run."""
    async with _keeper(url, work, "settler", lease=5.0) as keeper:
        ids = set()
        for statuses in (["active", "offered"], ["ended"]):
            for rec in await keeper.store.list_sessions(statuses=statuses, limit=100_000):
                ids.add(rec.session_id)
        for sid in sorted(ids):
            state = await keeper.load(sid)
            if state.status in ("active", "offered"):
                s = await keeper.resume(sid, via="takeover")
                for call in list(s.state.in_flight):  # re-runs started by the resume
                    with contextlib.suppress(callstate.CallstateError):
                        await s.run_tool(call.name, dict(call.args), call_id=call.call_id)
                await s.end("chaos settled", tool_grace=10.0)
        for _ in range(20):
            await keeper.sweep()
            await asyncio.sleep(0.05)
        return sorted(ids)


async def check(url: str, work: Path, ids: list[str]) -> dict[str, int]:
    """Count each invariant's violations (and what was checked)."""
    store = callstate.open_store(url)
    await store.open()
    try:
        journals: dict[str, list[Any]] = {}
        for sid in ids:
            journals[sid] = [ev.decode_event(raw) for raw in await store.read_events(sid)]
        lost = 0
        acks = _lines(work / "acks.log")
        for ack in acks:
            events = journals.get(ack["session"], [])
            said = {e.text for e in events if isinstance(e, ev.UserTurn)}
            if len(events) < ack["seq"] or ack["text"] not in said:
                lost += 1
        charged = Counter(
            (e["session"], e["call"])
            for e in _lines(work / "effects.log")
            if e["tool"] == "charge_card"
        )
        duplicates = sum(1 for n in charged.values() if n > 1)
        calls = open_calls = 0
        for events in journals.values():
            terminal = Counter(
                e.call_id
                for e in events
                if isinstance(e, ev.ToolSucceeded | ev.ToolFailed | ev.ToolCancelled)
                or (isinstance(e, ev.ToolInDoubt) and e.resolution == "unknown")
            )
            state = callstate.fold(events)
            for call in state.calls.values():
                calls += 1
                if call.status not in TERMINAL or terminal[call.call_id] != 1:
                    open_calls += 1
        done = Counter(f["record"] for f in _lines(work / "followups.log") if f["phase"] == "done")
        twice = sum(1 for n in done.values() if n > 1)
        return {
            "sessions": len(ids),
            "acknowledged_flushes": len(acks),
            "acknowledged_events_lost": lost,
            "non_idempotent_writes": sum(charged.values()),
            "duplicate_non_idempotent_writes": duplicates,
            "tool_calls": calls,
            "calls_without_one_outcome": open_calls,
            "followups_completed": sum(done.values()),
            "followups_run_twice": twice,
        }
    finally:
        await store.close()


def _scoped(url: str) -> str:
    """``url`` with a fresh Redis prefix or PostgreSQL schema for this run."""
    tag = f"chaos_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(url)
    key = {"redis": "prefix", "rediss": "prefix", "postgresql": "schema", "postgres": "schema"}.get(
        parts.scheme
    )
    if key is None:
        return url
    query = f"{parts.query}&{key}={tag}" if parts.query else f"{key}={tag}"
    return urlunsplit(parts._replace(query=query))


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def _drop_scope(url: str) -> None:
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    if "prefix" in query:
        import redis.asyncio as aioredis

        client = aioredis.from_url(urlunsplit(parts._replace(query="")))
        async for key in client.scan_iter(match=f"{query['prefix']}*"):
            await client.delete(key)
        await client.aclose()
    elif "schema" in query:
        import psycopg

        async with await psycopg.AsyncConnection.connect(
            urlunsplit(parts._replace(query="")), autocommit=True
        ) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{query["schema"]}" CASCADE')


def _spawn(args: argparse.Namespace, url: str, work: Path, n: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        url,
        "--work",
        str(work),
        "--who",
        f"w{n}",
        "--lease",
        str(args.lease),
        "--turns",
        str(args.turns),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _report_stalls(after: float) -> None:
    """Every ``after`` seconds, print each pending task's stack to stderr (a hung run says where)."""
    while True:
        await asyncio.sleep(after)
        print(f"--- still running after another {after:.0f}s; pending tasks:", file=sys.stderr)
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.print_stack(file=sys.stderr)


def _phase(name: str, started: float) -> None:
    print(f"phase {name} at {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)


async def supervise(args: argparse.Namespace) -> int:
    stalls = asyncio.create_task(_report_stalls(args.stall_report)) if args.stall_report else None
    try:
        return await _supervise(args)
    finally:
        if stalls is not None:
            stalls.cancel()


async def _supervise(args: argparse.Namespace) -> int:
    began = time.monotonic()
    url = _scoped(args.store)
    work = Path(tempfile.mkdtemp(prefix="callstate-chaos-"))
    rng = random.Random(args.seed)
    proxy = None
    worker_url = url
    if args.drop > 0 and urlsplit(url).scheme != "sqlite":
        from callstate.testing.faultproxy import FaultProxy

        target = urlsplit(url)
        default = 6379 if target.scheme.startswith("redis") else 5432
        proxy = FaultProxy(
            target.port or default,
            target.hostname or "127.0.0.1",
            seed=args.seed,
            drop_reply=args.drop,
            reset_request=args.drop / 2,
            lifetime=args.duration + 60,
            max_connections=100_000,
        )
        await proxy.start()
        worker_url = _via(url, proxy.port)
    # create the schema once, outside the chaos
    async with callstate.Keeper(url, secret=SECRET, sweep_every=None):
        pass
    kills = restarts = 0
    workers = [_spawn(args, worker_url, work, i) for i in range(args.workers)]
    spawned = len(workers)
    deadline = time.monotonic() + args.duration
    next_restart = time.monotonic() + args.restart_every if args.restart_cmd else float("inf")
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * args.kill_every)
            i = rng.randrange(len(workers))
            workers[i].send_signal(signal.SIGKILL)
            workers[i].wait()
            kills += 1
            workers[i] = _spawn(args, worker_url, work, spawned)
            spawned += 1
            if time.monotonic() >= next_restart:
                restart = await asyncio.create_subprocess_shell(args.restart_cmd)
                await asyncio.wait_for(restart.wait(), 60)
                restarts += 1
                next_restart = time.monotonic() + args.restart_every
    finally:
        for w in workers:
            w.send_signal(signal.SIGKILL)
            w.wait()
        if proxy is not None:
            await proxy.stop()
    _phase("settle", began)
    ids = await settle(url, work)
    _phase("check", began)
    counts = await check(url, work, ids)
    _phase("done", began)
    counts = {"worker_kills": kills, "store_restarts": restarts, **counts}
    if not args.keep:
        await _drop_scope(url)
    failed = [
        k
        for k in (
            "acknowledged_events_lost",
            "duplicate_non_idempotent_writes",
            "calls_without_one_outcome",
            "followups_run_twice",
        )
        if counts[k]
    ]
    for key, value in counts.items():
        print(f"{key} {value}")
    print("invariants " + ("FAILED: " + ", ".join(failed) if failed else "held"))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="sqlite:///" + str(Path(tempfile.mkdtemp()) / "chaos.db"))
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of chaos")
    p.add_argument("--kill-every", type=float, default=2.0, help="mean seconds between SIGKILLs")
    p.add_argument("--drop", type=float, default=0.0, help="share of store replies dropped")
    p.add_argument("--restart-cmd", default="", help="shell command that restarts the store")
    p.add_argument("--restart-every", type=float, default=10.0)
    p.add_argument("--lease", type=float, default=1.0, help="worker lease seconds")
    p.add_argument("--turns", type=int, default=6, help="turns per call")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the run's keys or schema")
    p.add_argument(
        "--stall-report",
        type=float,
        default=0.0,
        help="print the pending tasks' stacks to stderr every this many seconds (0: never)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--who", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        asyncio.run(worker(args.worker, Path(args.work), args.who, args.lease, args.turns))
        return 0
    return asyncio.run(supervise(args))


if __name__ == "__main__":
    sys.exit(main())
