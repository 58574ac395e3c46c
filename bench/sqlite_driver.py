"""SQLite access from asyncio: stdlib ``sqlite3`` on one dedicated thread vs ``aiosqlite``.

Both drivers run the same journal write (WAL, ``synchronous=FULL``, a ``WITHOUT ROWID``
events table, a per-session row checked and updated in the same transaction)::

    python bench/sqlite_driver.py [--rounds 500] [--batch 100] [--batches 200]

Drivers:

* ``thread``: stdlib ``sqlite3``; the whole transaction is one job handed to a thread
  that owns the connection (``loop.run_in_executor`` on a one-worker pool, as
  ``callstate.storage.sqlite`` does).
* ``queue``: the same, with a hand-rolled thread and ``SimpleQueue`` instead of the
  executor, to price ``run_in_executor``'s own overhead.
* ``aiosqlite``: every statement is its own awaited call (that is its API), each a
  hop to its worker thread and back.

Prints ``<driver>_commit_one_p50_ms``, ``<driver>_commit_one_p99_ms`` (one durable
single-event commit) and ``<driver>_batch_events_per_s`` (durable commits of ``--batch``
events each) per driver, one metric per line.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Protocol

SCHEMA = (
    "CREATE TABLE sessions (session_id TEXT PRIMARY KEY, epoch INTEGER, seq INTEGER) WITHOUT ROWID",
    "CREATE TABLE events (session_id TEXT, seq INTEGER, epoch INTEGER, data BLOB, "
    "PRIMARY KEY (session_id, seq)) WITHOUT ROWID",
    "INSERT INTO sessions VALUES ('s1', 1, 0)",
)
EVENT = b'{"type":"user.turn","seq":0,"at":1700000000.0,"text":"' + b"x" * 60 + b'"}'
INSERT = "INSERT INTO events (session_id, seq, epoch, data) VALUES (?, ?, ?, ?)"


def connect(path: str) -> sqlite3.Connection:
    """A connection set up the way the SQLite store sets up its own."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def setup(path: str) -> None:
    """Create the schema in a new file."""
    conn = connect(path)
    for stmt in SCHEMA:
        conn.execute(stmt)
    conn.close()


def txn(conn: sqlite3.Connection, count: int) -> None:
    """Append ``count`` events to session s1 in one durable transaction (sync)."""
    conn.execute("BEGIN IMMEDIATE")
    epoch, seq = conn.execute("SELECT epoch, seq FROM sessions WHERE session_id = 's1'").fetchone()
    conn.executemany(INSERT, [("s1", seq + 1 + i, epoch, EVENT) for i in range(count)])
    conn.execute("UPDATE sessions SET seq = ? WHERE session_id = 's1'", (seq + count,))
    conn.execute("COMMIT")


class Driver(Protocol):
    name: str

    async def open(self, path: str) -> None: ...
    async def append(self, count: int) -> None: ...
    async def close(self) -> None: ...


class ExecutorDriver:
    """stdlib sqlite3, one transaction per job on a one-thread executor."""

    name = "thread"

    async def open(self, path: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1)
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._pool, connect, path)

    async def append(self, count: int) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, txn, self._conn, count)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._conn.close)
        self._pool.shutdown()


class QueueDriver:
    """stdlib sqlite3, one transaction per job on a thread fed by a SimpleQueue."""

    name = "queue"

    async def open(self, path: str) -> None:
        self._jobs: SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            SimpleQueue()
        )
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()
        self._conn = await self._submit(lambda: connect(path))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                result = fn()
            except BaseException as exc:
                self._loop.call_soon_threadsafe(fut.set_exception, exc)
            else:
                self._loop.call_soon_threadsafe(fut.set_result, result)

    def _submit(self, fn: Callable[[], Any]) -> Awaitable[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((fn, fut))
        return fut

    async def append(self, count: int) -> None:
        await self._submit(lambda: txn(self._conn, count))

    async def close(self) -> None:
        await self._submit(self._conn.close)
        self._jobs.put(None)
        self._thread.join()


class AiosqliteDriver:
    """aiosqlite: the same transaction, one awaited call per statement."""

    name = "aiosqlite"

    async def open(self, path: str) -> None:
        import aiosqlite

        self._db = await aiosqlite.connect(path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute("PRAGMA synchronous = FULL")

    async def append(self, count: int) -> None:
        db = self._db
        await db.execute("BEGIN IMMEDIATE")
        async with db.execute("SELECT epoch, seq FROM sessions WHERE session_id = 's1'") as cur:
            row = await cur.fetchone()
        if row is None:
            raise RuntimeError("session row missing")
        epoch, seq = row
        await db.executemany(INSERT, [("s1", seq + 1 + i, epoch, EVENT) for i in range(count)])
        await db.execute("UPDATE sessions SET seq = ? WHERE session_id = 's1'", (seq + count,))
        await db.execute("COMMIT")

    async def close(self) -> None:
        await self._db.close()


def pct(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


async def measure(driver: Driver, folder: Path, rounds: int, batch: int, batches: int) -> None:
    """Run both workloads for one driver on a fresh file and print its metrics."""
    path = str(folder / f"{driver.name}.db")
    setup(path)
    await driver.open(path)
    for _ in range(20):  # warm the page cache and the WAL before timing
        await driver.append(1)
    one: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await driver.append(1)
        one.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    for _ in range(batches):
        await driver.append(batch)
    elapsed = time.perf_counter() - t0
    await driver.close()
    print(f"{driver.name}_commit_one_p50_ms {pct(one, 50):.4g}")
    print(f"{driver.name}_commit_one_p99_ms {pct(one, 99):.4g}")
    print(f"{driver.name}_batch_events_per_s {batch * batches / elapsed:.4g}", flush=True)


async def run(args: argparse.Namespace) -> None:
    """Measure every driver, each on its own new file."""
    folder = Path(tempfile.mkdtemp(prefix="callstate-driver-", dir=args.dir))
    for driver in (ExecutorDriver(), QueueDriver(), AiosqliteDriver()):
        await measure(driver, folder, args.rounds, args.batch, args.batches)
    shutil.rmtree(folder)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=500, help="single-event commits")
    parser.add_argument("--batch", type=int, default=100, help="events per batch commit")
    parser.add_argument("--batches", type=int, default=200, help="batch commits")
    parser.add_argument("--dir", help="folder for the database files (default: temp)")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
