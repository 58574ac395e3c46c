"""A fleet of worker processes sharing sessions through Redis or PostgreSQL.

Four real processes, each with its own ``Keeper`` on the same server, start 200 sessions,
pass them around by resume and handoff at random, race to resume one session more than
a hundred times, and claim follow-ups. Afterwards every journal is read back and checked:
seq gap-free, epochs rising by one per new owner, every event written by the owner of
its epoch and none by a fenced or losing process.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import re
import time
from collections.abc import AsyncIterator, Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from callstate import Keeper, Session, StaleEpochError, open_store
from callstate.errors import SessionClosed
from callstate.journal import events as ev
from callstate.storage.base import FollowUp, Store
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

pytestmark = [pytest.mark.services, pytest.mark.slow]

WORKERS = 4
SESSIONS = 200
MOVES = 200  # resumes and handoffs
RACES = 120
FOLLOWUPS = 200
TURNS = 3  # user turns each new owner records
SECRET = b"fleet-test-secret-0123456789"
_TAG = re.compile(r"w(\d+) e(\d+) k(\d+)")
README = Path(__file__).resolve().parent.parent / "README.md"


# -- the worker process ------------------------------------------------------------------


def _write(s: Session, idx: int) -> None:
    for k in range(TURNS):
        s.user_said(f"w{idx} e{s.state.epoch} k{k}")


async def _serve(
    idx: int, url: str, options: dict[str, Any], conn: Connection, race: Barrier, fu: Barrier
) -> None:
    keeper = Keeper(open_store(url, **options), secret=SECRET, owner=f"w{idx}", lease_ttl=600)
    handles: dict[str, Session] = {}  # the newest handle this worker got for each session
    loop = asyncio.get_running_loop()

    async def owned(s: Session) -> tuple[Any, ...]:
        handles[s.id] = s
        _write(s, idx)
        await s.flush()
        return ("ok", s.state.epoch, s.state.seq)

    async def run(cmd: tuple[Any, ...]) -> tuple[Any, ...]:
        match cmd:
            case ("start", sid):
                return await owned(await keeper.start(session_id=sid, agent="a0"))
            case ("resume", sid):
                return await owned(await keeper.resume(sid))
            case ("handoff", sid, to):
                pkg = await handles[sid].handoff(to=to, reason="fleet")
                return ("pkg", pkg.package_id)
            case ("accept", package_id):
                return await owned(await keeper.accept(package_id))
            case ("race", sid, epoch):
                await loop.run_in_executor(None, race.wait, 30)
                try:
                    s = await keeper.resume(sid, expected_epoch=epoch)
                except StaleEpochError:
                    return ("stale",)
                return await owned(s)
            case ("zombies", sids):
                leaked = []
                for sid in sids:  # sessions another process took from this one
                    try:
                        handles[sid].user_said(f"zombie w{idx}")
                        await handles[sid].flush()
                    except (StaleEpochError, SessionClosed):
                        continue
                    leaked.append(sid)
                return ("zombies", leaked)
            case ("followups", now):
                await loop.run_in_executor(None, fu.wait, 30)
                mine: list[str] = []
                while batch := await keeper.store.followup_claim(now, f"w{idx}", 3600, limit=7):
                    for f in batch:
                        assert await keeper.store.followup_done(f.followup_id, f"w{idx}")
                        mine.append(f.followup_id)
                return ("claimed", mine)
        raise AssertionError(cmd)

    async with keeper:
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == ("stop",):
                break
            try:
                conn.send(await run(cmd))
            except Exception as exc:
                conn.send(("error", type(exc).__name__, str(exc)))
    conn.send(("stopped",))


def _worker(
    idx: int, url: str, options: dict[str, Any], conn: Connection, race: Barrier, fu: Barrier
) -> None:
    asyncio.run(_serve(idx, url, options, conn, race, fu))


# -- the coordinator ---------------------------------------------------------------------


class Fleet:
    """Four worker processes and the pipes to command them."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self.race = ctx.Barrier(2)
        self.fu = ctx.Barrier(WORKERS)
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for idx in range(WORKERS):
            here, there = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(idx, url, options, there, self.race, self.fu), daemon=True
            )
            proc.start()
            self.pipes.append(here)
            self.procs.append(proc)

    async def ask(self, orders: dict[int, tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
        """Send each worker its order at once and wait for every reply."""
        loop = asyncio.get_running_loop()
        for idx, order in orders.items():
            self.pipes[idx].send(order)
        replies = await asyncio.gather(
            *(loop.run_in_executor(None, self._recv, idx) for idx in orders)
        )
        return dict(zip(orders, replies, strict=True))

    def _recv(self, idx: int) -> tuple[Any, ...]:
        if not self.pipes[idx].poll(120):
            msg = f"worker {idx} did not answer"
            raise TimeoutError(msg)
        reply: tuple[Any, ...] = self.pipes[idx].recv()
        return reply

    def stop(self) -> None:
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            try:
                pipe.send(("stop",))
                if pipe.poll(30):
                    pipe.recv()
            except (OSError, EOFError):
                pass
            proc.join(30)
            if proc.is_alive():
                proc.kill()


@pytest.fixture(params=["redis", "postgres"])
async def backend(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[str, dict[str, Any], Store]]:
    """(url, store options, an opened store of the coordinator) for one backend, cleaned up after."""
    if request.param == "redis":
        url, name = redis_url(), unique("fleet")
        options: dict[str, Any] = {"prefix": name}
    else:
        url, name = postgres_url(), unique("fleet")
        options = {"schema": name}
    store = open_store(url, **options)
    await store.open()
    try:
        yield url, options, store
    finally:
        await store.close()
        if request.param == "redis":
            await drop_redis_prefix(url, name)
        else:
            await drop_pg_schema(url, name)


@pytest.fixture
def fleet_of(backend: tuple[str, dict[str, Any], Store]) -> Iterator[Fleet]:
    """Four worker processes on the backend's store, stopped afterwards."""
    fleet = Fleet(backend[0], backend[1])
    try:
        yield fleet
    finally:
        fleet.stop()


def _ok(reply: tuple[Any, ...]) -> tuple[int, int]:
    assert "ok" == reply[0], reply
    return int(reply[1]), int(reply[2])


async def _check_journal(store: Store, sid: str, owners: dict[int, int]) -> None:
    """Gap-free seq; epochs rise by one per ownership event; each turn by its epoch's owner."""
    events = [ev.decode_event(raw) for raw in await store.read_events(sid)]
    assert list(range(1, len(events) + 1)) == [e.seq for e in events]
    assert isinstance(events[0], ev.SessionStarted)
    epoch, turns = 1, {e: 0 for e in owners}
    for e in events:
        if isinstance(e, ev.SessionResumed | ev.HandoffAccepted):
            assert epoch + 1 == e.epoch, (sid, e)
            epoch = e.epoch
        elif isinstance(e, ev.UserTurn):
            m = _TAG.fullmatch(e.text)
            assert m is not None, (sid, e.text)  # a zombie's write would land here
            assert (owners[epoch], epoch) == (int(m[1]), int(m[2])), (sid, e.text)
            turns[epoch] += 1
    assert max(owners) == epoch
    assert {e: TURNS for e in owners} == turns  # nothing acknowledged was lost
    rec = await store.get(sid)
    assert rec is not None
    assert (epoch, len(events)) == (rec.epoch, rec.seq)


async def test_fleet_moves_and_races_sessions_between_processes(
    backend: tuple[str, dict[str, Any], Store], fleet_of: Fleet
) -> None:
    """4 processes, 200 sessions, random resumes/handoffs and ≥100 resume races: journals stay exact."""
    store, fleet, rng = backend[2], fleet_of, random.Random(6)
    sids = [f"fleet-{i:03d}" for i in range(SESSIONS)]
    owner: dict[str, int] = {}
    owners: dict[str, dict[int, int]] = {sid: {} for sid in sids}  # epoch -> worker
    ever: dict[int, set[str]] = {idx: set() for idx in range(WORKERS)}

    def took(sid: str, idx: int, reply: tuple[Any, ...]) -> None:
        epoch, _ = _ok(reply)
        owner[sid] = idx
        owners[sid][epoch] = idx
        ever[idx].add(sid)

    for i in range(0, SESSIONS, WORKERS):
        replies = await fleet.ask({idx: ("start", sids[i + idx]) for idx in range(WORKERS)})
        for idx, reply in replies.items():
            took(sids[i + idx], idx, reply)

    handoffs = resumes = 0
    for _ in range(MOVES // WORKERS):
        picked = rng.sample(sids, WORKERS)
        # each worker takes one session it does not own, from whichever process does
        targets = {
            idx: sid for idx, sid in zip(range(WORKERS), picked, strict=True) if owner[sid] != idx
        }
        use_handoff = {idx: rng.random() < 0.5 for idx in targets}
        offers = {}
        for idx, sid in targets.items():
            if use_handoff[idx]:
                reply = (await fleet.ask({owner[sid]: ("handoff", sid, f"a{idx}")}))[owner[sid]]
                assert "pkg" == reply[0], reply
                offers[idx] = reply[1]
        orders = {
            idx: ("accept", offers[idx]) if use_handoff[idx] else ("resume", sid)
            for idx, sid in targets.items()
        }
        for idx, reply in (await fleet.ask(orders)).items():
            took(targets[idx], idx, reply)
        handoffs += sum(use_handoff.values())
        resumes += len(targets) - sum(use_handoff.values())
    assert handoffs > 50
    assert resumes > 50

    for _ in range(RACES):
        sid = rng.choice(sids)
        a, b = rng.sample(range(WORKERS), 2)
        rec = await store.get(sid)
        assert rec is not None
        replies = await fleet.ask({a: ("race", sid, rec.epoch), b: ("race", sid, rec.epoch)})
        won = [idx for idx, r in replies.items() if r[0] == "ok"]
        assert 1 == len(won), replies
        assert [("stale",)] == [r for r in replies.values() if r[0] != "ok"]
        took(sid, won[0], replies[won[0]])
        assert rec.epoch + 1 == max(owners[sid])

    zombies = {idx: sorted(s for s in ever[idx] if owner[s] != idx) for idx in range(WORKERS)}
    for idx, reply in (await fleet.ask({i: ("zombies", z) for i, z in zombies.items()})).items():
        assert ("zombies", []) == reply, idx
    assert sum(len(z) for z in zombies.values()) > 100

    for sid in sids:
        await _check_journal(store, sid, owners[sid])


async def test_followups_are_claimed_exactly_once_across_processes(
    backend: tuple[str, dict[str, Any], Store], fleet_of: Fleet
) -> None:
    """4 processes claim 200 due follow-ups at once: each is claimed and done by exactly one."""
    store, fleet = backend[2], fleet_of
    now = time.time()
    ids = [f"fu-{i:03d}" for i in range(FOLLOWUPS)]
    for i, fid in enumerate(ids):
        await store.followup_put(
            FollowUp(followup_id=fid, session_id=f"s{i % 17}", due_at=now - i, payload=b"job")
        )
    replies = await fleet.ask({idx: ("followups", now) for idx in range(WORKERS)})
    claimed = [fid for reply in replies.values() for fid in reply[1]]
    assert sorted(ids) == sorted(claimed)
    assert [] == await store.followup_claim(now + 10_000, "late", 60)


async def test_readme_many_workers_example_runs_on_each_backend(
    backend: tuple[str, dict[str, Any], Store], capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's "Running many workers" example runs as written (on a fresh prefix/schema)."""
    url, options, _ = backend
    section = README.read_text().split("## Running many workers", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)[1]
    ours = f"{url}?{'&'.join(f'{k}={v}' for k, v in options.items())}"
    code = code.replace('"redis://127.0.0.1:6379/0?prefix=readme"', repr(ours))
    assert repr(ours) in code
    await asyncio.to_thread(exec, compile(code, str(README), "exec"), {"__name__": "__main__"})
    assert [
        "a lost the race; b owns epoch 2",
        "a's old handle is fenced",
    ] == capsys.readouterr().out.splitlines()
