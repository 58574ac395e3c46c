"""SQLite store (WAL): the embedded default.

All statements run on one dedicated thread with one connection (stdlib ``sqlite3``),
so the event loop never blocks on disk. Several processes may share one file: writes
take the lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, TypeVar

from ..errors import (
    CallstateError,
    ConfigError,
    ConflictError,
    SessionNotFound,
    StorageError,
)
from ._worker import Worker
from .base import (
    ArchiveRow,
    Batch,
    FollowUp,
    Loaded,
    PackageRow,
    SessionRecord,
    check_batch,
    stale_claim,
)

__all__ = ["MIGRATIONS", "SQLiteStore"]

_T = TypeVar("_T")

#: Versioned schema migrations; each runs once, in order, inside a transaction.
MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
        CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            epoch INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            agent TEXT NOT NULL,
            status TEXT NOT NULL,
            caller_hash TEXT,
            created_at REAL NOT NULL,
            last_interaction_at REAL NOT NULL,
            lease_owner TEXT,
            lease_until REAL NOT NULL DEFAULT 0,
            snapshot_seq INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE INDEX sessions_interaction ON sessions (last_interaction_at);
        CREATE TABLE events (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE snapshots (
            session_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            data BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE callers (
            caller_hash TEXT NOT NULL,
            session_id TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (caller_hash, session_id)
        ) WITHOUT ROWID;
        CREATE TABLE archive (
            record_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            caller_hash TEXT,
            ended_at REAL NOT NULL,
            outcome TEXT NOT NULL,
            data BLOB NOT NULL
        );
        CREATE INDEX archive_session ON archive (session_id);
        CREATE INDEX archive_caller ON archive (caller_hash);
        CREATE INDEX archive_ended ON archive (ended_at);
        CREATE TRIGGER archive_no_update BEFORE UPDATE ON archive
            BEGIN SELECT RAISE(ABORT, 'callstate archive is insert-only'); END;
        CREATE TRIGGER archive_no_delete BEFORE DELETE ON archive
            BEGIN SELECT RAISE(ABORT, 'callstate archive is insert-only'); END;
        CREATE TABLE followups (
            followup_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            due_at REAL NOT NULL,
            payload BLOB NOT NULL,
            status TEXT NOT NULL,
            claimed_by TEXT,
            claimed_until REAL NOT NULL DEFAULT 0
        );
        CREATE INDEX followups_due ON followups (status, due_at);
        CREATE TABLE packages (
            package_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            data BLOB NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        """,
    ),
)

_SESSION_COLS = (
    "session_id, epoch, seq, agent, status, caller_hash, created_at, "
    "last_interaction_at, lease_owner, lease_until, snapshot_seq"
)


def _path_from_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite" or not rest.startswith("/"):
        msg = (
            f"sqlite url {url!r} must look like 'sqlite:///relative.db' or 'sqlite:////abs/path.db'"
        )
        raise ConfigError(msg)
    path = rest[1:]
    if not path:
        msg = f"sqlite url {url!r} names no file"
        raise ConfigError(msg)
    return path


def _session(row: tuple[Any, ...]) -> SessionRecord:
    return SessionRecord(
        session_id=row[0],
        epoch=row[1],
        seq=row[2],
        agent=row[3],
        status=row[4],
        caller_hash=row[5],
        created_at=row[6],
        last_interaction_at=row[7],
        lease_owner=row[8],
        lease_until=row[9],
        snapshot_seq=row[10],
    )


class SQLiteStore:
    """A store in one SQLite file (WAL, ``synchronous=FULL`` by default).

    Args:
        url: ``sqlite:///path.db`` (relative) or ``sqlite:////abs/path.db``.
        synchronous: ``FULL`` (an acknowledged flush survives power loss) or
            ``NORMAL`` (survives a process crash, not power loss; faster).
        busy_timeout: seconds a writer waits for another process's lock.
    """

    def __init__(
        self,
        url: str = "sqlite:///callstate.db",
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            msg = f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            raise ConfigError(msg)
        self.url = url
        self.path = _path_from_url(url)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._worker: Worker | None = None

    # -- plumbing ----------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._worker is None or self._conn is None:
            msg = f"store {self.url!r} is not open; call `await store.open()` first"
            raise StorageError(msg)
        conn = self._conn

        def call() -> _T:
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                msg = f"sqlite store {self.path!r}: {exc}"
                raise StorageError(msg) from exc

        return await self._worker.submit(call)

    @staticmethod
    def _write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return result

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:  # e.g. a missing directory
            msg = f"sqlite store {self.path!r} cannot be opened: {exc}"
            raise StorageError(msg) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if self.path != ":memory:" and str(mode).lower() != "wal":
                msg = f"sqlite store {self.path!r}: could not enable WAL (journal_mode={mode})"
                raise StorageError(msg)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            msg = f"sqlite store {self.path!r} cannot be opened: {exc}"
            raise StorageError(msg) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS callstate_migrations "
            "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM callstate_migrations")}
        newest = max((v for v, _ in MIGRATIONS), default=0)
        if done and max(done) > newest:
            msg = (
                f"database schema version {max(done)} is newer than this callstate "
                f"supports ({newest}); upgrade callstate"
            )
            raise StorageError(msg)
        for version, script in MIGRATIONS:
            if version in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(
                    "SELECT 1 FROM callstate_migrations WHERE version = ?", (version,)
                ).fetchone():
                    conn.rollback()  # another process migrated first
                    continue
                for stmt in script.split(";\n"):  # trigger bodies hold "; " inline
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(
                    "INSERT INTO callstate_migrations VALUES (?, ?)", (version, time.time())
                )
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._worker = Worker("callstate-sqlite")
        try:
            self._conn = await self._worker.submit(self._connect)
        except BaseException:
            self._worker.stop()
            self._worker = None
            raise

    async def close(self) -> None:
        if self._conn is None or self._worker is None:
            return
        conn, worker = self._conn, self._worker
        try:
            await worker.submit(conn.close)
        finally:
            worker.stop()
            self._conn = None
            self._worker = None

    async def schema_version(self) -> int:
        row = await self._run(
            lambda c: c.execute("SELECT max(version) FROM callstate_migrations").fetchone()
        )
        return int(row[0] or 0)

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for a sound database."""
        rows = await self._run(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        return "\n".join(str(r[0]) for r in rows)

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
                f"INSERT INTO sessions ({_SESSION_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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

    @staticmethod
    def _append_one(c: sqlite3.Connection, b: Batch) -> None:
        c.executemany(
            "INSERT INTO events (session_id, seq, epoch, data) VALUES (?, ?, ?, ?)",
            [(b.session_id, b.first_seq + i, b.epoch, data) for i, data in enumerate(b.events)],
        )
        if b.snapshot is not None:
            c.execute(
                "INSERT INTO snapshots (session_id, seq, data) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, data = excluded.data",
                (b.session_id, b.snapshot_seq, b.snapshot),
            )
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

    @classmethod
    def _append_isolated(cls, c: sqlite3.Connection, b: Batch) -> CallstateError | None:
        """Append one batch inside a savepoint, so a refused batch leaves no half of itself."""
        c.execute("SAVEPOINT batch")
        error: CallstateError | None = None
        try:
            cls._append_one(c, b)
        except sqlite3.IntegrityError as exc:
            c.execute("ROLLBACK TO batch")
            msg = (
                f"session {b.session_id!r}: batch of seq {b.first_seq}..{b.last_seq} "
                f"refused by the database: {exc}"
            )
            error = ConflictError(msg)
        c.execute("RELEASE batch")
        return error

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        if not batches:
            return []

        def txn(c: sqlite3.Connection) -> list[CallstateError | None]:
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

        return await self._run(lambda c: self._write(c, txn))

    async def load(self, session_id: str) -> Loaded:
        def read(c: sqlite3.Connection) -> Loaded:
            c.execute("BEGIN")  # one consistent read snapshot
            try:
                row = c.execute(
                    f"SELECT {_SESSION_COLS} FROM sessions WHERE session_id = ?", (session_id,)
                ).fetchone()
                if row is None:
                    msg = f"session {session_id!r} not found in the store"
                    raise SessionNotFound(msg, session_id=session_id)
                rec = _session(row)
                snap = c.execute(
                    "SELECT seq, data FROM snapshots WHERE session_id = ?", (session_id,)
                ).fetchone()
                after = 0 if snap is None else snap[0]
                events = [
                    r[0]
                    for r in c.execute(
                        "SELECT data FROM events WHERE session_id = ? AND seq > ? ORDER BY seq",
                        (session_id, after),
                    )
                ]
            finally:
                c.rollback()
            return Loaded(record=rec, snapshot=None if snap is None else snap[1], events=events)

        return await self._run(read)

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        def read(c: sqlite3.Connection) -> list[bytes]:
            if not c.execute(
                "SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone():
                msg = f"session {session_id!r} not found in the store"
                raise SessionNotFound(msg, session_id=session_id)
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
                f"SELECT {_SESSION_COLS} FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        )
        return None if row is None else _session(row)

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
            where.append("last_interaction_at < ?")
            args.append(interaction_before)
        sql = (
            f"SELECT {_SESSION_COLS} FROM sessions WHERE {' AND '.join(where)} "
            "ORDER BY last_interaction_at DESC LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [_session(r) for r in rows]

    async def claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float
    ) -> int:
        def txn(c: sqlite3.Connection) -> int:
            row = c.execute(
                "SELECT epoch FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                msg = f"session {session_id!r} not found in the store"
                raise SessionNotFound(msg, session_id=session_id)
            if row[0] != expected_epoch:
                raise stale_claim(session_id, expected_epoch, row[0])
            c.execute(
                "UPDATE sessions SET epoch = epoch + 1, lease_owner = ?, lease_until = ? "
                "WHERE session_id = ?",
                (owner, lease_until, session_id),
            )
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
            for table in ("sessions", "events", "snapshots", "callers"):
                c.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

        await self._run(lambda c: self._write(c, txn))

    # -- caller index --------------------------------------------------------------------

    async def index_caller(self, caller_hash: str, session_id: str, at: float) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO callers (caller_hash, session_id, at) VALUES (?, ?, ?) "
                "ON CONFLICT (caller_hash, session_id) DO UPDATE SET at = excluded.at",
                (caller_hash, session_id, at),
            )
        )

    async def lookup_caller(self, caller_hash: str) -> list[tuple[str, float]]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT session_id, at FROM callers WHERE caller_hash = ? ORDER BY at DESC",
                (caller_hash,),
            ).fetchall()
        )
        return [(r[0], r[1]) for r in rows]

    # -- archive -------------------------------------------------------------------------

    async def archive_insert(self, row: ArchiveRow) -> None:
        def txn(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO archive (record_id, session_id, caller_hash, ended_at, outcome, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        row.record_id,
                        row.session_id,
                        row.caller_hash,
                        row.ended_at,
                        row.outcome,
                        row.data,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname != "SQLITE_CONSTRAINT_PRIMARYKEY":
                    raise  # a NULL or other bad value: a StorageError, not a clash
                msg = f"archive record {row.record_id!r} already exists; archive rows are never overwritten"
                raise ConflictError(msg) from exc

        await self._run(txn)

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT record_id, session_id, caller_hash, ended_at, outcome, data "
                "FROM archive WHERE record_id = ?",
                (record_id,),
            ).fetchone()
        )
        return None if row is None else _archive(row)

    async def archive_list(
        self,
        *,
        session_id: str | None = None,
        caller_hash: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ArchiveRow]:
        where: list[str] = ["1"]
        args: list[object] = []
        for col, val, op in (
            ("session_id", session_id, "="),
            ("caller_hash", caller_hash, "="),
            ("ended_at", since, ">="),
        ):
            if val is not None:
                where.append(f"{col} {op} ?")
                args.append(val)
        sql = (
            "SELECT record_id, session_id, caller_hash, ended_at, outcome, data FROM archive "
            f"WHERE {' AND '.join(where)} ORDER BY ended_at DESC LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [_archive(r) for r in rows]

    # -- follow-ups ----------------------------------------------------------------------

    async def followup_put(self, followup: FollowUp) -> None:
        f = followup
        await self._run(
            lambda c: c.execute(
                "INSERT INTO followups (followup_id, session_id, due_at, payload, status, "
                "claimed_by, claimed_until) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (followup_id) DO UPDATE SET due_at = excluded.due_at, "
                "payload = excluded.payload WHERE followups.status = 'pending'",
                (
                    f.followup_id,
                    f.session_id,
                    f.due_at,
                    f.payload,
                    f.status,
                    f.claimed_by,
                    f.claimed_until,
                ),
            )
        )

    async def followup_cancel(self, session_id: str) -> int:
        return await self._run(
            lambda c: (
                c.execute(
                    "UPDATE followups SET status = 'cancelled' WHERE session_id = ? AND status = 'pending'",
                    (session_id,),
                ).rowcount
            )
        )

    async def followup_claim(
        self, now: float, owner: str, claim_for: float, limit: int = 10
    ) -> list[FollowUp]:
        def txn(c: sqlite3.Connection) -> list[FollowUp]:
            rows = c.execute(
                "SELECT followup_id, session_id, due_at, payload FROM followups "
                "WHERE (status = 'pending' AND due_at <= ?) "
                "OR (status = 'claimed' AND claimed_until <= ?) ORDER BY due_at LIMIT ?",
                (now, now, limit),
            ).fetchall()
            out = []
            for r in rows:
                c.execute(
                    "UPDATE followups SET status = 'claimed', claimed_by = ?, claimed_until = ? "
                    "WHERE followup_id = ?",
                    (owner, now + claim_for, r[0]),
                )
                out.append(
                    FollowUp(
                        followup_id=r[0],
                        session_id=r[1],
                        due_at=r[2],
                        payload=r[3],
                        status="claimed",
                        claimed_by=owner,
                        claimed_until=now + claim_for,
                    )
                )
            return out

        return await self._run(lambda c: self._write(c, txn))

    async def followup_done(self, followup_id: str, owner: str) -> bool:
        count = await self._run(
            lambda c: (
                c.execute(
                    "UPDATE followups SET status = 'done' "
                    "WHERE followup_id = ? AND status = 'claimed' AND claimed_by = ?",
                    (followup_id, owner),
                ).rowcount
            )
        )
        return bool(count)

    # -- handoff packages ------------------------------------------------------------------

    async def package_put(self, row: PackageRow) -> None:
        def txn(c: sqlite3.Connection) -> None:
            try:
                c.execute(
                    "INSERT INTO packages (package_id, session_id, data, status, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (row.package_id, row.session_id, row.data, row.status, row.created_at),
                )
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname != "SQLITE_CONSTRAINT_PRIMARYKEY":
                    raise  # a NULL or other bad value: a StorageError, not a clash
                msg = f"handoff package {row.package_id!r} already exists"
                raise ConflictError(msg) from exc

        await self._run(txn)

    async def package_get(self, package_id: str) -> PackageRow | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT package_id, session_id, data, status, created_at FROM packages "
                "WHERE package_id = ?",
                (package_id,),
            ).fetchone()
        )
        if row is None:
            return None
        return PackageRow(
            package_id=row[0], session_id=row[1], data=row[2], status=row[3], created_at=row[4]
        )

    async def package_transition(self, package_id: str, from_status: str, to_status: str) -> bool:
        count = await self._run(
            lambda c: (
                c.execute(
                    "UPDATE packages SET status = ? WHERE package_id = ? AND status = ?",
                    (to_status, package_id, from_status),
                ).rowcount
            )
        )
        return bool(count)


def _archive(row: tuple[Any, ...]) -> ArchiveRow:
    return ArchiveRow(
        record_id=row[0],
        session_id=row[1],
        caller_hash=row[2],
        ended_at=row[3],
        outcome=row[4],
        data=row[5],
    )
