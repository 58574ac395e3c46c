"""SQLite store (WAL): the embedded default.

All statements run on one dedicated thread with one connection (stdlib ``sqlite3``),
so the event loop never blocks on disk. Several processes may share one file: writes
take the lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence

from ..errors import CallstateError, ConflictError
from ._sql_rows import SESSION_COLS, session_from_row
from ._sqlite_records import SQLiteRecords
from ._sqlite_schema import MIGRATIONS
from .abilities import Landed
from .base import (
    Batch,
    Loaded,
    PackageMove,
    SessionRecord,
    check_batch,
    new_claim_id,
    not_found,
    package_not_in,
    stale_claim,
)

__all__ = ["MIGRATIONS", "SQLiteStore"]


class SQLiteStore(SQLiteRecords):
    """A store in one SQLite file (WAL, ``synchronous=FULL`` by default).

    Args:
        url: ``sqlite:///path.db`` (relative) or ``sqlite:////abs/path.db``.
        synchronous: ``FULL`` (an acknowledged flush survives power loss) or
            ``NORMAL`` (survives a process crash, not power loss; faster).
        busy_timeout: seconds a writer waits for another process's lock.
    """

    atomic_packages = True  # a Batch's package is stored in the batch's transaction

    # -- sessions and journal ----------------------------------------------------------

    async def create(self, record: SessionRecord, first: Batch) -> None:
        def txn(c: sqlite3.Connection) -> None:
            if c.execute(
                "SELECT 1 FROM sessions WHERE session_id = ?", (record.session_id,)
            ).fetchone():
                msg = f"session {record.session_id!r} already exists"
                raise ConflictError(msg)
            if first.first_seq != 1:
                msg = f"a new session's first batch starts at seq 1, not {first.first_seq}"
                raise ConflictError(msg)
            c.execute(
                f"INSERT INTO sessions ({SESSION_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.session_id,
                    first.epoch,
                    0,
                    record.agent,
                    record.status,
                    record.caller_hash,
                    record.created_at,
                    record.last_interaction_at,
                    record.lease_owner,
                    record.lease_until,
                    0,
                ),
            )
            self._append_one(c, first)

        await self._run(lambda c: self._write(c, txn))

    @classmethod
    def _append_one(cls, c: sqlite3.Connection, b: Batch) -> None:
        if b.package is not None:
            cls._insert_package(c, b.package)
        c.executemany(
            "INSERT INTO events (session_id, seq, epoch, data) VALUES (?, ?, ?, ?)",
            [(b.session_id, b.first_seq + i, b.epoch, data) for i, data in enumerate(b.events)],
        )
        cls._put_snapshot(c, b)
        c.execute(
            "UPDATE sessions SET seq = ?, agent = CASE WHEN ? = '' THEN agent ELSE ? END, "
            "status = ?, last_interaction_at = max(last_interaction_at, ?), "
            "snapshot_seq = CASE WHEN ? > 0 THEN ? ELSE snapshot_seq END WHERE session_id = ?",
            (
                b.last_seq,
                b.agent,
                b.agent,
                b.status,
                b.last_interaction_at,
                b.snapshot_seq if b.snapshot is not None else 0,
                b.snapshot_seq,
                b.session_id,
            ),
        )

    @staticmethod
    def _put_snapshot(c: sqlite3.Connection, b: Batch) -> None:
        """Store the batch's snapshot and snapshot parts, if it carries any."""
        if b.snapshot is not None:
            c.execute(
                "INSERT INTO snapshots (session_id, seq, data) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, data = excluded.data",
                (b.session_id, b.snapshot_seq, b.snapshot),
            )
        if b.snapshot_parts:
            c.executemany(
                "INSERT INTO snapshot_parts (session_id, part, data) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id, part) DO UPDATE SET data = excluded.data",
                [(b.session_id, n, data) for n, data in b.snapshot_parts.items()],
            )

    @classmethod
    def _append_isolated(cls, c: sqlite3.Connection, b: Batch) -> CallstateError | None:
        """Append one batch inside a savepoint, so a refused batch leaves no half of itself."""
        c.execute("SAVEPOINT batch")
        error: CallstateError | None = None
        try:
            cls._append_one(c, b)
        except (sqlite3.IntegrityError, ConflictError) as exc:
            c.execute("ROLLBACK TO batch")
            msg = (
                f"session {b.session_id!r}: batch of seq {b.first_seq}..{b.last_seq} "
                f"refused by the database: {exc}"
            )
            error = ConflictError(msg)
        c.execute("RELEASE batch")
        return error

    @staticmethod
    def _append_fast(c: sqlite3.Connection, batches: Sequence[Batch]) -> bool:
        """Append every batch in two statements: one guarded ``UPDATE`` of the sessions
        (each row only at the batch's epoch and preceding seq), one ``INSERT`` of all the
        events. False when a batch is refused, a row clashes or a package rides along:
        the caller rolls back and appends batch by batch, each error named.
        """
        if any(b.package is not None for b in batches):
            return False
        cur = c.executemany(
            "UPDATE sessions SET seq = ?, agent = CASE WHEN ? = '' THEN agent ELSE ? END, "
            "status = ?, last_interaction_at = max(last_interaction_at, ?), "
            "snapshot_seq = CASE WHEN ? > 0 THEN ? ELSE snapshot_seq END "
            "WHERE session_id = ? AND epoch = ? AND seq = ?",
            [
                (
                    b.last_seq,
                    b.agent,
                    b.agent,
                    b.status,
                    b.last_interaction_at,
                    b.snapshot_seq if b.snapshot is not None else 0,
                    b.snapshot_seq,
                    b.session_id,
                    b.epoch,
                    b.first_seq - 1,
                )
                for b in batches
            ],
        )
        if cur.rowcount != len(batches):
            return False
        try:
            c.executemany(
                "INSERT INTO events (session_id, seq, epoch, data) VALUES (?, ?, ?, ?)",
                [
                    (b.session_id, b.first_seq + i, b.epoch, data)
                    for b in batches
                    for i, data in enumerate(b.events)
                ],
            )
        except sqlite3.IntegrityError:
            return False
        for b in batches:
            SQLiteStore._put_snapshot(c, b)
        return True

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        if not batches:
            return []
        return await self._run(self._appending(batches))

    def append_soon(self, batches: Sequence[Batch], landed: Landed) -> None:
        """``append`` answering by callback (``AppendsSoon``): the group commit's way in."""
        if not batches:
            asyncio.get_running_loop().call_soon(landed, True, [])
            return
        self._run_then(self._appending(batches), landed)

    def _appending(
        self, batches: Sequence[Batch]
    ) -> Callable[[sqlite3.Connection], list[CallstateError | None]]:
        """The transaction appending ``batches``, to run on the store's thread."""

        def txn(c: sqlite3.Connection) -> list[CallstateError | None]:
            c.execute("BEGIN IMMEDIATE")
            try:
                if self._append_fast(c, batches):
                    c.commit()
                    return [None] * len(batches)
                c.rollback()  # nothing of it stays; now batch by batch, naming each refusal
                return self._write(c, careful)
            except BaseException:
                if c.in_transaction:
                    c.rollback()
                raise

        def careful(c: sqlite3.Connection) -> list[CallstateError | None]:
            results: list[CallstateError | None] = []
            for b in batches:
                row = c.execute(
                    "SELECT epoch, seq FROM sessions WHERE session_id = ?", (b.session_id,)
                ).fetchone()
                error = check_batch(
                    b.session_id, None if row is None else row[0], 0 if row is None else row[1], b
                )
                if error is None:
                    error = self._append_isolated(c, b)
                results.append(error)
            return results

        return txn

    async def load(self, session_id: str) -> Loaded:
        def read(c: sqlite3.Connection) -> Loaded:
            c.execute("BEGIN")  # one consistent read snapshot
            try:
                row = c.execute(
                    f"SELECT {SESSION_COLS} FROM sessions WHERE session_id = ?", (session_id,)
                ).fetchone()
                if row is None:
                    raise not_found(session_id)
                rec = session_from_row(row)
                snap = c.execute(
                    "SELECT seq, data FROM snapshots WHERE session_id = ?", (session_id,)
                ).fetchone()
                after = 0 if snap is None else snap[0]
                parts = dict(
                    c.execute(
                        "SELECT part, data FROM snapshot_parts WHERE session_id = ?", (session_id,)
                    ).fetchall()
                    if snap is not None
                    else ()
                )
                events = [
                    r[0]
                    for r in c.execute(
                        "SELECT data FROM events WHERE session_id = ? AND seq > ? ORDER BY seq",
                        (session_id, after),
                    )
                ]
            finally:
                c.rollback()
            snapshot = None if snap is None else snap[1]
            return Loaded(record=rec, snapshot=snapshot, events=events, snapshot_parts=parts)

        return await self._run(read)

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        def read(c: sqlite3.Connection) -> list[bytes]:
            if not c.execute(
                "SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone():
                raise not_found(session_id)
            return [
                r[0]
                for r in c.execute(
                    "SELECT data FROM events WHERE session_id = ? AND seq > ? ORDER BY seq",
                    (session_id, after_seq),
                )
            ]

        return await self._run(read)

    async def get(self, session_id: str) -> SessionRecord | None:
        row = await self._run(
            lambda c: c.execute(
                f"SELECT {SESSION_COLS} FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        )
        return None if row is None else session_from_row(row)

    async def list_sessions(
        self,
        *,
        statuses: Sequence[str] | None = None,
        lease_before: float | None = None,
        interaction_before: float | None = None,
        limit: int = 1000,
    ) -> list[SessionRecord]:
        where: list[str] = ["1"]
        args: list[object] = []
        if statuses is not None:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if lease_before is not None:
            where.append("lease_until < ?")
            args.append(lease_before)
        if interaction_before is not None:
            # the index holds the minute (migration 11); the exact time filters within it
            if abs(interaction_before) < 2**52:  # inf and nan leave the index unused
                where.append("interaction_minute <= ?")
                args.append(int(interaction_before / 60))
            where.append("last_interaction_at < ?")
            args.append(interaction_before)
        sql = (
            f"SELECT {SESSION_COLS} FROM sessions WHERE {' AND '.join(where)} "
            "ORDER BY interaction_minute DESC, last_interaction_at DESC LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [session_from_row(r) for r in rows]

    async def claim(
        self,
        session_id: str,
        expected_epoch: int,
        owner: str,
        lease_until: float,
        *,
        package: PackageMove | None = None,
        then: Batch | None = None,
        claim_id: str | None = None,
    ) -> int:
        cid = new_claim_id(claim_id)

        def txn(c: sqlite3.Connection) -> int:
            done = c.execute(
                "SELECT epoch FROM sessions WHERE session_id = ? AND claim_id = ?",
                (session_id, cid),
            ).fetchone()
            if done is not None and done[0] == expected_epoch + 1:
                return expected_epoch + 1  # this very claim, done before with all it carried
            if package is not None:
                status = c.execute(
                    "SELECT status FROM packages WHERE package_id = ?", (package.package_id,)
                ).fetchone()
                if status is None or status[0] != package.from_status:
                    raise package_not_in(package, None if status is None else status[0])
            row = c.execute(
                "SELECT epoch, seq FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise not_found(session_id)
            if row[0] != expected_epoch:
                raise stale_claim(session_id, expected_epoch, row[0])
            if then is not None:
                error = check_batch(session_id, expected_epoch + 1, row[1], then)
                if error is not None:
                    raise error
            if package is not None:
                c.execute(
                    "UPDATE packages SET status = ? WHERE package_id = ?",
                    (package.to_status, package.package_id),
                )
            c.execute(
                "UPDATE sessions SET epoch = epoch + 1, lease_owner = ?, lease_until = ?, "
                "claim_id = ? WHERE session_id = ?",
                (owner, lease_until, cid, session_id),
            )
            if then is not None:
                self._append_one(c, then)
            return expected_epoch + 1

        return await self._run(lambda c: self._write(c, txn))

    async def renew_leases(self, owner: str, session_ids: Sequence[str], until: float) -> list[str]:
        def txn(c: sqlite3.Connection) -> list[str]:
            held = []
            for sid in session_ids:
                cur = c.execute(
                    "UPDATE sessions SET lease_until = ? WHERE session_id = ? AND lease_owner = ?",
                    (until, sid, owner),
                )
                if cur.rowcount:
                    held.append(sid)
            return held

        return await self._run(lambda c: self._write(c, txn))

    async def release_lease(self, session_id: str, owner: str) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE sessions SET lease_owner = NULL, lease_until = 0 "
                "WHERE session_id = ? AND lease_owner = ?",
                (session_id, owner),
            )
        )

    async def purge(self, session_id: str) -> None:
        def txn(c: sqlite3.Connection) -> None:
            for table in ("sessions", "events", "snapshots", "snapshot_parts", "callers"):
                c.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

        await self._run(lambda c: self._write(c, txn))
