"""PostgreSQL store: sessions shared by a fleet of workers through one database.

psycopg 3 with an async connection pool, autocommit. Every write that must be atomic
is one statement (data-modifying CTEs), so it is one transaction and one round trip:
a group commit is a single conditional ``UPDATE … WHERE epoch = … AND seq = …``
joined with the inserts of the events and snapshots of the sessions it matched.
Schema changes are versioned migrations (``_pg_schema.MIGRATIONS``) recorded in
``callstate_migrations``; the archive refuses UPDATE, DELETE and TRUNCATE by trigger.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the install
    msg = "the PostgreSQL store needs psycopg 3: pip install callstate[postgres]"
    raise ImportError(msg) from exc

from ..errors import CallstateError, ConfigError, ConflictError, SessionNotFound, StorageError
from ._pg_schema import MIGRATIONS
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

__all__ = ["MIGRATIONS", "PostgresStore"]

_T = TypeVar("_T")
_Conn = psycopg.AsyncConnection[Any]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_COLS = (
    "session_id, epoch, seq, agent, status, caller_hash, created_at, "
    "last_interaction_at, lease_owner, lease_until, snapshot_seq"
)
_ARCH_COLS = "record_id, session_id, caller_hash, ended_at, outcome, data"

# The group commit. ``ok`` is the conditional update: a batch lands only if the row
# still has its epoch and ends right before it (or ends inside the batch's range of
# doubt: then ``skip`` events were committed by an attempt whose reply was lost and
# only the rest is written; the caller has checked those bytes).
_APPEND = """
WITH b AS (
    SELECT * FROM unnest(%b::text[], %b::int8[], %b::int8[], %b::int8[], %b::int8[],
                         %b::text[], %b::text[], %b::float8[], %b::int8[])
        AS b(session_id, epoch, first_seq, last_seq, skip, agent, status, lia, snap_seq)
), ok AS (
    UPDATE {s}.sessions AS s SET seq = b.last_seq,
        agent = CASE WHEN b.agent = '' THEN s.agent ELSE b.agent END,
        status = b.status,
        last_interaction_at = greatest(s.last_interaction_at, b.lia),
        snapshot_seq = CASE WHEN b.snap_seq > 0 THEN b.snap_seq ELSE s.snapshot_seq END
    FROM b WHERE s.session_id = b.session_id AND s.epoch = b.epoch
        AND s.seq = b.first_seq - 1 + b.skip
    RETURNING s.session_id
), ev AS (
    INSERT INTO {s}.events (session_id, seq, epoch, data)
    SELECT e.session_id, e.seq, e.epoch, e.data
    FROM unnest(%b::text[], %b::int8[], %b::int8[], %b::bytea[]) AS e(session_id, seq, epoch, data)
    JOIN ok USING (session_id)
), sn AS (
    INSERT INTO {s}.snapshots (session_id, seq, data)
    SELECT x.session_id, x.seq, x.data
    FROM unnest(%b::text[], %b::int8[], %b::bytea[]) AS x(session_id, seq, data)
    JOIN ok USING (session_id)
    ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, data = excluded.data
)
SELECT session_id FROM ok
"""


def _record(row: Sequence[Any]) -> SessionRecord:
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


def _archive(row: Sequence[Any]) -> ArchiveRow:
    return ArchiveRow(
        record_id=row[0],
        session_id=row[1],
        caller_hash=row[2],
        ended_at=row[3],
        outcome=row[4],
        data=bytes(row[5]),
    )


class PostgresStore:
    """A store in PostgreSQL; many processes on many machines may share one database.

    Args:
        url: ``postgresql://user@host:port/dbname``; ``?schema=name`` sets ``schema``.
        schema: the schema holding callstate's tables (created if missing).
        pool_size: most connections held open.
        retry_for: seconds to keep reconnecting and retrying an operation before it
            raises ``StorageError``.
        connect_timeout: seconds one connection attempt may take.
    """

    def __init__(
        self,
        url: str = "postgresql://127.0.0.1:5432/postgres",
        *,
        schema: str | None = None,
        pool_size: int = 10,
        retry_for: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            msg = f"postgres store url {url!r} must start with postgresql:// or postgres://"
            raise ConfigError(msg)
        query = parse_qsl(parts.query, keep_blank_values=True)
        url_schema = next((v for k, v in query if k == "schema"), None)
        self._conninfo = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"]))
        )
        self.schema = schema or url_schema or "callstate"
        if not _IDENT.fullmatch(self.schema):
            msg = f"postgres schema must be a plain identifier (letters, digits, _), got {self.schema!r}"
            raise ConfigError(msg)
        for name, value in (("retry_for", retry_for), ("connect_timeout", connect_timeout)):
            if not value > 0:
                msg = f"{name} must be > 0 seconds, got {value!r}"
                raise ConfigError(msg)
        if pool_size < 1:
            msg = f"pool_size must be >= 1, got {pool_size!r}"
            raise ConfigError(msg)
        self.url = url
        self.pool_size = pool_size
        self.retry_for = float(retry_for)
        self.connect_timeout = float(connect_timeout)
        #: ``application_name`` of this store's connections (find them in pg_stat_activity).
        self.application_name = f"callstate-{uuid.uuid4().hex[:12]}"
        #: Attempts repeated after a connection failure, since open.
        self.retries = 0
        #: Batches found already (partly) stored by an attempt whose reply was lost.
        self.replayed = 0
        self._pool: AsyncConnectionPool[_Conn] | None = None
        self._doubt: dict[str, tuple[int, int, int]] = {}  # sid -> (epoch, lo, hi)
        self._s = f'"{self.schema}"'
        self._append_sql = _APPEND.replace("{s}", self._s)

    # -- plumbing ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[_Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=self.retry_for,
            kwargs={
                "autocommit": True,
                "application_name": self.application_name,
                "connect_timeout": max(1, round(self.connect_timeout)),
            },
        )
        self._pool = pool
        try:
            await pool.open(wait=False)
            await self._run("open", self._migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _migrate(self, conn: _Conn, _: bool) -> None:
        s = self._s
        async with conn.transaction():
            # one migrator per schema at a time, across processes
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"callstate:{s}"])
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {s}.callstate_migrations "
                "(version integer PRIMARY KEY, applied_at double precision NOT NULL)"
            )
            cur = await conn.execute(f"SELECT version FROM {s}.callstate_migrations")
            done = {r[0] for r in await cur.fetchall()}
            newest = max(v for v, _ in MIGRATIONS)
            if done and max(done) > newest:
                msg = (
                    f"postgres schema {self.schema!r} is at version {max(done)}, newer than this "
                    f"callstate supports ({newest}); upgrade callstate"
                )
                raise StorageError(msg)
            for version, script in MIGRATIONS:
                if version not in done:
                    await conn.execute(script.replace("{schema}", s).encode())
                    await conn.execute(
                        f"INSERT INTO {s}.callstate_migrations VALUES (%s, %s)",
                        [version, time.time()],
                    )

    async def schema_version(self) -> int:
        async def op(conn: _Conn, _: bool) -> int:
            cur = await conn.execute(f"SELECT max(version) FROM {self._s}.callstate_migrations")
            row = await cur.fetchone()
            return int(row[0] or 0) if row else 0

        return await self._run("schema_version", op)

    async def _run(self, what: str, op: Callable[[_Conn, bool], Awaitable[_T]]) -> _T:
        """Run ``op(conn, retrying)``, reconnecting and retrying for up to ``retry_for`` s."""
        pool = self._pool
        if pool is None:
            msg = f"store {self.url!r} is not open; call `await store.open()` first"
            raise StorageError(msg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay, attempt = 0.01, 0
        while True:
            left = max(deadline - loop.time(), 0.05)
            try:
                async with asyncio.timeout(left), pool.connection(timeout=left) as conn:
                    return await op(conn, attempt > 0)
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
                last: BaseException = exc  # connection lost, server restarting, deadlock
            except psycopg.Error as exc:
                msg = f"postgres store {self.url!r}: {what} failed: {exc}"
                raise StorageError(msg) from exc
            now = loop.time()
            if now >= deadline:
                msg = f"postgres store {self.url!r}: {what} failed for {self.retry_for:.1f}s: {last!r}"
                raise StorageError(msg) from last
            attempt += 1
            self.retries += 1
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, 0.25)

    async def _fetch(
        self, what: str, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[Any]:
        async def op(conn: _Conn, _: bool) -> list[Any]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description else []

        return await self._run(what, op)

    # -- sessions and journal ----------------------------------------------------------

    async def create(self, record: SessionRecord, first: Batch) -> None:
        sid, s = record.session_id, self._s
        if first.first_seq != 1:
            msg = f"a new session's first batch starts at seq 1, not {first.first_seq}"
            raise ConflictError(msg)
        row = [
            sid,
            first.epoch,
            first.last_seq,
            first.agent or record.agent,
            first.status,
            record.caller_hash,
            record.created_at,
            max(record.last_interaction_at, first.last_interaction_at),
            record.lease_owner,
            record.lease_until,
            first.snapshot_seq if first.snapshot is not None else 0,
        ]
        seqs = list(range(1, first.last_seq + 1))
        snap = [first.snapshot] if first.snapshot is not None else []
        sql = f"""
            WITH s AS (
                INSERT INTO {s}.sessions ({_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
                ON CONFLICT (session_id) DO NOTHING RETURNING session_id
            ), e AS (
                INSERT INTO {s}.events (session_id, seq, epoch, data)
                SELECT s.session_id, e.seq, %s, e.data
                FROM s, unnest(%b::int8[], %b::bytea[]) AS e(seq, data)
            ), x AS (
                INSERT INTO {s}.snapshots (session_id, seq, data)
                SELECT s.session_id, %s, d FROM s, unnest(%b::bytea[]) AS d
            )
            SELECT count(*) FROM s
        """
        params = [*row, first.epoch, seqs, first.events, first.snapshot_seq, snap]

        async def op(conn: _Conn, retrying: bool) -> bool:
            cur = await conn.execute(sql, params)
            created = await cur.fetchone()
            if created and created[0]:
                return True
            if not retrying:
                return False
            # a retried create whose first reply was lost: is what is stored ours?
            cur = await conn.execute(
                f"SELECT e.data FROM {s}.sessions x JOIN {s}.events e USING (session_id) "
                "WHERE x.session_id = %s AND x.epoch = %s ORDER BY e.seq LIMIT %s",
                [sid, first.epoch, len(first.events) + 1],
            )
            return [bytes(r[0]) for r in await cur.fetchall()] == list(first.events)

        if not await self._run("create", op):
            msg = f"session {sid!r} already exists"
            raise ConflictError(msg)

    def _doubt_range(self, b: Batch, retrying: bool) -> tuple[int, int]:
        """Seqs of ``b``'s session this store may have committed without seeing the reply."""
        lo, hi = (b.first_seq, b.last_seq) if retrying else (0, 0)
        d = self._doubt.get(b.session_id)
        if d is not None and d[0] == b.epoch:
            lo, hi = (min(lo, d[1]), max(hi, d[2])) if retrying else (d[1], d[2])
        return lo, hi

    async def _append_round(self, conn: _Conn, batches: Sequence[tuple[Batch, int]]) -> set[str]:
        """Append each ``(batch, skip)`` (its first ``skip`` events already stored); the ids that landed."""
        cols: list[list[Any]] = [[] for _ in range(9)]
        ev: list[list[Any]] = [[], [], [], []]
        sn: list[list[Any]] = [[], [], []]
        for b, skip in batches:
            values = (b.session_id, b.epoch, b.first_seq, b.last_seq, skip, b.agent, b.status)
            for col, v in zip(cols, (*values, b.last_interaction_at, 0), strict=True):
                col.append(v)
            for i in range(skip, len(b.events)):
                for col, v in zip(
                    ev, (b.session_id, b.first_seq + i, b.epoch, b.events[i]), strict=True
                ):
                    col.append(v)
            if b.snapshot is not None:
                cols[8][-1] = b.snapshot_seq
                for col, v in zip(sn, (b.session_id, b.snapshot_seq, b.snapshot), strict=True):
                    col.append(v)
        cur = await conn.execute(self._append_sql, [*cols, *ev, *sn])
        return {r[0] for r in await cur.fetchall()}

    async def _overlap(
        self, conn: _Conn, b: Batch, stored_seq: int, lo: int, hi: int
    ) -> int | None:
        """How many of ``b``'s events are already stored as its own unacknowledged commit."""
        upto = min(stored_seq, b.last_seq)
        if not (lo <= b.first_seq <= upto <= hi):
            return None
        cur = await conn.execute(
            f"SELECT data FROM {self._s}.events WHERE session_id = %s AND seq BETWEEN %s AND %s "
            "ORDER BY seq",
            [b.session_id, b.first_seq, upto],
        )
        have = [bytes(r[0]) for r in await cur.fetchall()]
        return len(have) if have == list(b.events[: len(have)]) and have else None

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        if not batches:
            return []
        s = self._s

        async def op(conn: _Conn, retrying: bool) -> list[CallstateError | None]:
            out: list[CallstateError | None] = [None] * len(batches)
            todo = list(range(len(batches)))
            while todo:
                # one batch per session per statement; later ones wait for the next round
                now: list[int] = []
                later: list[int] = []
                seen: set[str] = set()
                for i in todo:
                    (later if batches[i].session_id in seen else now).append(i)
                    seen.add(batches[i].session_id)
                todo = later
                now.sort(key=lambda i: batches[i].session_id)  # one lock order for all writers
                landed = await self._append_round(conn, [(batches[i], 0) for i in now])
                failed = [i for i in now if batches[i].session_id not in landed]
                if not failed:
                    continue
                cur = await conn.execute(
                    f"SELECT session_id, epoch, seq FROM {s}.sessions WHERE session_id = ANY(%s)",
                    [[batches[i].session_id for i in failed]],
                )
                stored = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
                resumed: list[tuple[int, int]] = []
                for i in failed:
                    b = batches[i]
                    epoch, seq = stored.get(b.session_id, (None, 0))
                    error = check_batch(b.session_id, epoch, seq, b)
                    if error is None:  # the row moved on and back? never: epochs only grow
                        error = ConflictError(
                            f"session {b.session_id!r}: batch raced another writer"
                        )
                    elif epoch == b.epoch and b.first_seq <= seq:
                        skip = await self._overlap(conn, b, seq, *self._doubt_range(b, retrying))
                        if skip is not None:
                            self.replayed += 1
                            if skip < len(b.events):
                                resumed.append((i, skip))
                            continue
                    out[i] = error
                if resumed:
                    landed = await self._append_round(conn, [(batches[i], k) for i, k in resumed])
                    for i, _ in resumed:
                        if batches[i].session_id not in landed:
                            out[i] = ConflictError(
                                f"session {batches[i].session_id!r}: batch raced another writer"
                            )
            return out

        try:
            results = await self._run("append", op)
        except StorageError:
            for b in batches:  # any attempt may have landed: remember where
                lo, hi = self._doubt_range(b, True)
                self._doubt[b.session_id] = (b.epoch, lo, hi)
            raise
        for b in batches:
            self._doubt.pop(b.session_id, None)
        return results

    async def load(self, session_id: str) -> Loaded:
        s = self._s
        sql = f"""
            SELECT {", ".join("x." + c.strip() for c in _COLS.split(","))}, sn.data,
                coalesce((SELECT array_agg(e.data ORDER BY e.seq) FROM {s}.events e
                          WHERE e.session_id = x.session_id AND e.seq > coalesce(sn.seq, 0)),
                         '{{}}')
            FROM {s}.sessions x LEFT JOIN {s}.snapshots sn USING (session_id)
            WHERE x.session_id = %s
        """
        rows = await self._fetch("load", sql, [session_id])
        if not rows:
            msg = f"session {session_id!r} not found in the store"
            raise SessionNotFound(msg, session_id=session_id)
        row = rows[0]
        return Loaded(
            record=_record(row),
            snapshot=None if row[11] is None else bytes(row[11]),
            events=[bytes(e) for e in row[12]],
        )

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        s = self._s
        sql = f"""
            SELECT coalesce((SELECT array_agg(e.data ORDER BY e.seq) FROM {s}.events e
                             WHERE e.session_id = x.session_id AND e.seq > %s), '{{}}')
            FROM {s}.sessions x WHERE x.session_id = %s
        """
        rows = await self._fetch("read_events", sql, [after_seq, session_id])
        if not rows:
            msg = f"session {session_id!r} not found in the store"
            raise SessionNotFound(msg, session_id=session_id)
        return [bytes(e) for e in rows[0][0]]

    async def get(self, session_id: str) -> SessionRecord | None:
        sql = f"SELECT {_COLS} FROM {self._s}.sessions WHERE session_id = %s"
        rows = await self._fetch("get", sql, [session_id])
        return _record(rows[0]) if rows else None

    async def list_sessions(
        self,
        *,
        statuses: Sequence[str] | None = None,
        lease_before: float | None = None,
        interaction_before: float | None = None,
        limit: int = 1000,
    ) -> list[SessionRecord]:
        where, args = ["true"], []
        for cond, value in (
            ("status = ANY(%s)", None if statuses is None else list(statuses)),
            ("lease_until < %s", lease_before),
            ("last_interaction_at < %s", interaction_before),
        ):
            if value is not None:
                where.append(cond)
                args.append(value)
        sql = (
            f"SELECT {_COLS} FROM {self._s}.sessions WHERE {' AND '.join(where)} "
            "ORDER BY last_interaction_at DESC LIMIT %s"
        )
        return [_record(r) for r in await self._fetch("list_sessions", sql, [*args, max(limit, 0)])]

    async def claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float
    ) -> int:
        s = self._s
        sql = f"""
            WITH u AS (
                UPDATE {s}.sessions SET epoch = epoch + 1, lease_owner = %s, lease_until = %s
                WHERE session_id = %s AND epoch = %s RETURNING epoch
            )
            SELECT (SELECT epoch FROM u), (SELECT epoch FROM {s}.sessions WHERE session_id = %s)
        """
        rows = await self._fetch(
            "claim", sql, [owner, lease_until, session_id, expected_epoch, session_id]
        )
        new, current = rows[0]
        if new is not None:
            return int(new)
        if current is None:
            msg = f"session {session_id!r} not found in the store"
            raise SessionNotFound(msg, session_id=session_id)
        # the statement's snapshot may predate a racing claim: report at least one newer
        raise stale_claim(session_id, expected_epoch, max(int(current), expected_epoch + 1))

    async def renew_leases(self, owner: str, session_ids: Sequence[str], until: float) -> list[str]:
        if not session_ids:
            return []
        sql = (
            f"UPDATE {self._s}.sessions SET lease_until = %s "
            "WHERE session_id = ANY(%s) AND lease_owner = %s RETURNING session_id"
        )
        held = {
            r[0] for r in await self._fetch("renew_leases", sql, [until, list(session_ids), owner])
        }
        return [sid for sid in session_ids if sid in held]

    async def release_lease(self, session_id: str, owner: str) -> None:
        sql = (
            f"UPDATE {self._s}.sessions SET lease_owner = NULL, lease_until = 0 "
            "WHERE session_id = %s AND lease_owner = %s"
        )
        await self._fetch("release_lease", sql, [session_id, owner])

    async def purge(self, session_id: str) -> None:
        s = self._s
        sql = f"""
            WITH e AS (DELETE FROM {s}.events WHERE session_id = %(sid)s),
                 x AS (DELETE FROM {s}.snapshots WHERE session_id = %(sid)s),
                 c AS (DELETE FROM {s}.callers WHERE session_id = %(sid)s)
            DELETE FROM {s}.sessions WHERE session_id = %(sid)s
        """
        await self._fetch("purge", sql, {"sid": session_id})

    # -- caller index --------------------------------------------------------------------

    async def index_caller(self, caller_hash: str, session_id: str, at: float) -> None:
        sql = (
            f"INSERT INTO {self._s}.callers (caller_hash, session_id, at) VALUES (%s, %s, %s) "
            "ON CONFLICT (caller_hash, session_id) DO UPDATE SET at = excluded.at"
        )
        await self._fetch("index_caller", sql, [caller_hash, session_id, at])

    async def lookup_caller(self, caller_hash: str) -> list[tuple[str, float]]:
        sql = (
            f"SELECT session_id, at FROM {self._s}.callers WHERE caller_hash = %s ORDER BY at DESC"
        )
        return [(r[0], r[1]) for r in await self._fetch("lookup_caller", sql, [caller_hash])]

    # -- archive (insert-only) -------------------------------------------------------

    async def archive_insert(self, row: ArchiveRow) -> None:
        s = self._s
        values = [
            row.record_id,
            row.session_id,
            row.caller_hash,
            row.ended_at,
            row.outcome,
            row.data,
        ]

        async def op(conn: _Conn, retrying: bool) -> bool:
            cur = await conn.execute(
                f"INSERT INTO {s}.archive ({_ARCH_COLS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (record_id) DO NOTHING RETURNING record_id",
                values,
            )
            if await cur.fetchone() is not None:
                return True
            if not retrying:
                return False
            cur = await conn.execute(
                f"SELECT {_ARCH_COLS} FROM {s}.archive WHERE record_id = %s", [row.record_id]
            )
            stored = await cur.fetchone()
            return stored is not None and _archive(stored) == row

        if not await self._run("archive_insert", op):
            msg = f"archive record {row.record_id!r} already exists; archive rows are never overwritten"
            raise ConflictError(msg)

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        sql = f"SELECT {_ARCH_COLS} FROM {self._s}.archive WHERE record_id = %s"
        rows = await self._fetch("archive_get", sql, [record_id])
        return _archive(rows[0]) if rows else None

    async def archive_list(
        self,
        *,
        session_id: str | None = None,
        caller_hash: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ArchiveRow]:
        where, args = ["true"], []
        for cond, value in (
            ("session_id = %s", session_id),
            ("caller_hash = %s", caller_hash),
            ("ended_at >= %s", since),
        ):
            if value is not None:
                where.append(cond)
                args.append(value)
        sql = (
            f"SELECT {_ARCH_COLS} FROM {self._s}.archive WHERE {' AND '.join(where)} "
            "ORDER BY ended_at DESC LIMIT %s"
        )
        return [_archive(r) for r in await self._fetch("archive_list", sql, [*args, max(limit, 0)])]

    # -- follow-ups ------------------------------------------------------------------

    async def followup_put(self, followup: FollowUp) -> None:
        f = followup
        sql = (
            f"INSERT INTO {self._s}.followups (followup_id, session_id, due_at, payload, status, "
            "claimed_by, claimed_until) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (followup_id) DO UPDATE SET session_id = excluded.session_id, "
            "due_at = excluded.due_at, payload = excluded.payload, status = excluded.status, "
            "claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until "
            "WHERE followups.status = 'pending'"
        )
        values = [f.followup_id, f.session_id, f.due_at, f.payload, f.status]
        await self._fetch("followup_put", sql, [*values, f.claimed_by, f.claimed_until])

    async def followup_cancel(self, session_id: str) -> int:
        sql = (
            f"UPDATE {self._s}.followups SET status = 'cancelled' "
            "WHERE session_id = %s AND status = 'pending' RETURNING 1"
        )
        return len(await self._fetch("followup_cancel", sql, [session_id]))

    async def followup_claim(
        self, now: float, owner: str, claim_for: float, limit: int = 10
    ) -> list[FollowUp]:
        s, until = self._s, now + claim_for

        async def op(conn: _Conn, retrying: bool) -> list[Any]:
            # SKIP LOCKED: racing claimers each take different rows instead of queueing;
            # a retry also takes back what this very call claimed before its reply was lost
            cur = await conn.execute(
                f"""
                UPDATE {s}.followups f SET status = 'claimed', claimed_by = %(owner)s,
                    claimed_until = %(until)s
                FROM (SELECT followup_id FROM {s}.followups
                      WHERE (status = 'pending' AND due_at <= %(now)s)
                         OR (status = 'claimed' AND claimed_until <= %(now)s)
                         OR (%(retrying)s AND status = 'claimed' AND claimed_by = %(owner)s
                             AND claimed_until = %(until)s)
                      ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) c
                WHERE f.followup_id = c.followup_id
                RETURNING f.followup_id, f.session_id, f.due_at, f.payload
                """,
                {
                    "owner": owner,
                    "until": until,
                    "now": now,
                    "retrying": retrying,
                    "limit": max(limit, 0),
                },
            )
            return await cur.fetchall()

        rows = sorted(await self._run("followup_claim", op), key=lambda r: r[2])
        return [
            FollowUp(
                followup_id=r[0],
                session_id=r[1],
                due_at=r[2],
                payload=bytes(r[3]),
                status="claimed",
                claimed_by=owner,
                claimed_until=until,
            )
            for r in rows
        ]

    async def followup_done(self, followup_id: str, owner: str) -> bool:
        s = self._s

        async def op(conn: _Conn, retrying: bool) -> bool:
            cur = await conn.execute(
                f"UPDATE {s}.followups SET status = 'done' WHERE followup_id = %s "
                "AND claimed_by = %s AND (status = 'claimed' OR (%s AND status = 'done')) "
                "RETURNING 1",
                [followup_id, owner, retrying],
            )
            return await cur.fetchone() is not None

        return await self._run("followup_done", op)

    # -- handoff packages ------------------------------------------------------------

    async def package_put(self, row: PackageRow) -> None:
        s = self._s
        values = [row.package_id, row.session_id, row.data, row.status, row.created_at]

        async def op(conn: _Conn, retrying: bool) -> bool:
            cur = await conn.execute(
                f"INSERT INTO {s}.packages (package_id, session_id, data, status, created_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (package_id) DO NOTHING RETURNING 1",
                values,
            )
            if await cur.fetchone() is not None:
                return True
            if not retrying:
                return False
            cur = await conn.execute(
                f"SELECT package_id, session_id, data, status, created_at FROM {s}.packages "
                "WHERE package_id = %s",
                [row.package_id],
            )
            stored = await cur.fetchone()
            return (
                stored is not None
                and [stored[0], stored[1], bytes(stored[2]), *stored[3:]] == values
            )

        if not await self._run("package_put", op):
            msg = f"handoff package {row.package_id!r} already exists"
            raise ConflictError(msg)

    async def package_get(self, package_id: str) -> PackageRow | None:
        sql = (
            f"SELECT package_id, session_id, data, status, created_at FROM {self._s}.packages "
            "WHERE package_id = %s"
        )
        rows = await self._fetch("package_get", sql, [package_id])
        if not rows:
            return None
        r = rows[0]
        return PackageRow(
            package_id=r[0], session_id=r[1], data=bytes(r[2]), status=r[3], created_at=r[4]
        )

    async def package_transition(self, package_id: str, from_status: str, to_status: str) -> bool:
        nonce = uuid.uuid4().hex  # lets a retry recognise its own earlier transition
        sql = (
            f"UPDATE {self._s}.packages SET status = %(to)s, transition_id = %(nonce)s "
            "WHERE package_id = %(id)s AND (status = %(from)s "
            "OR (status = %(to)s AND transition_id = %(nonce)s)) RETURNING 1"
        )
        params = {"to": to_status, "nonce": nonce, "id": package_id, "from": from_status}
        return bool(await self._fetch("package_transition", sql, params))
