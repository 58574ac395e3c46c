"""The SQLite store's side tables: caller index, insert-only archive, follow-ups, packages."""

from __future__ import annotations

import sqlite3

from ..errors import ConflictError
from ._sql_rows import ARCHIVE_COLS, archive_from_row, archive_values, followup_from_row
from ._sql_rows import FOLLOWUP_COLS as _FOLLOWUP_COLS
from ._sqlite_base import SQLiteBase
from ._sqlite_rollup import read_figures, roll_up, roll_up_lag
from .base import ArchiveRow, FollowUp, FollowUpRun, PackageRow
from .figures import Figures

__all__ = ["SQLiteRecords"]

_ARCHIVE_SLOTS = ", ".join("?" * len(ARCHIVE_COLS.split(",")))


class SQLiteRecords(SQLiteBase):
    """Everything of ``SQLiteStore`` that is not a session or its journal."""

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
                    f"INSERT INTO archive ({ARCHIVE_COLS}) VALUES ({_ARCHIVE_SLOTS})",
                    archive_values(row),
                )
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname != "SQLITE_CONSTRAINT_PRIMARYKEY":
                    raise  # a NULL or other bad value: a StorageError, not a clash
                msg = f"archive record {row.record_id!r} already exists; archive rows are never overwritten"
                raise ConflictError(msg) from exc
            roll_up(c, row)  # in the same transaction: the rollup never misses a leg

        await self._run(lambda c: self._write(c, txn))

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        row = await self._run(
            lambda c: c.execute(
                f"SELECT {ARCHIVE_COLS} FROM archive WHERE record_id = ?",
                (record_id,),
            ).fetchone()
        )
        return None if row is None else archive_from_row(row)

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
            f"SELECT {ARCHIVE_COLS} FROM archive "
            f"WHERE {' AND '.join(where)} ORDER BY ended_at DESC LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [archive_from_row(r) for r in rows]

    async def archive_figures(self, since: float, until: float) -> Figures:
        return await self._run(lambda c: read_figures(c, since, until))

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
        def cancel(c: sqlite3.Connection) -> int:
            # every resume asks, and most have nothing pending: a read takes no write
            # lock, so it never waits behind another process's commit for nothing
            pending = c.execute(
                "SELECT 1 FROM followups WHERE session_id = ? AND status = 'pending' LIMIT 1",
                (session_id,),
            ).fetchone()
            if pending is None:
                return 0
            return c.execute(
                "UPDATE followups SET status = 'cancelled' WHERE session_id = ? AND status = 'pending'",
                (session_id,),
            ).rowcount

        return await self._run(cancel)

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

    async def followup_start(self, followup_id: str, owner: str, now: float) -> int:
        row = await self._run(
            lambda c: c.execute(
                "UPDATE followups SET attempts = attempts + CASE WHEN started_until IS NOT NULL "
                "AND started_until = claimed_until THEN 0 ELSE 1 END, "
                "started_until = claimed_until, updated_at = ? "
                "WHERE followup_id = ? AND status = 'claimed' AND claimed_by = ? RETURNING attempts",
                (now, followup_id, owner),
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    async def followup_settle(
        self,
        followup_id: str,
        owner: str,
        *,
        mark: str,
        error: str | None,
        now: float,
        retry_at: float | None = None,
    ) -> bool:
        status = "done" if retry_at is None else "pending"

        def txn(c: sqlite3.Connection) -> bool:
            row = c.execute(
                "UPDATE followups SET status = ?, due_at = COALESCE(?, due_at), mark = ?, "
                "last_error = ?, updated_at = ? "
                "WHERE followup_id = ? AND status = 'claimed' AND claimed_by = ? RETURNING due_at",
                (status, retry_at, mark, error, now, followup_id, owner),
            ).fetchone()
            if row is not None and status == "done" and mark == "succeeded":
                roll_up_lag(c, row[0], now)  # in the same transaction as the settle
            return row is not None

        return await self._run(lambda c: self._write(c, txn))

    async def followup_get(self, followup_id: str) -> FollowUp | None:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT {_FOLLOWUP_COLS} FROM followups WHERE followup_id = ?", (followup_id,)
            ).fetchall()
        )
        return followup_from_row(rows[0]) if rows else None

    async def followup_list(self, limit: int = 100) -> list[FollowUp]:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT {_FOLLOWUP_COLS} FROM followups ORDER BY due_at DESC LIMIT ?",
                (max(limit, 0),),
            ).fetchall()
        )
        return [followup_from_row(r) for r in rows]

    async def followup_retry(self, followup_id: str, now: float) -> bool:
        count = await self._run(
            lambda c: (
                c.execute(
                    "UPDATE followups SET status = 'pending', mark = '', due_at = ?, "
                    "updated_at = ? WHERE followup_id = ? AND ((status = 'done' AND mark = 'dead') "
                    "OR (status = 'pending' AND mark IN ('retrying', 'orphaned')))",
                    (now, now, followup_id),
                ).rowcount
            )
        )
        return bool(count)

    async def followup_record(self, run: FollowUpRun) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO followup_runs (followup_id, session_id, data) VALUES (?, ?, ?) "
                "ON CONFLICT (followup_id) DO NOTHING",
                (run.followup_id, run.session_id, run.data),
            )
        )

    async def followup_runs(self, session_id: str) -> list[FollowUpRun]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT followup_id, session_id, data FROM followup_runs WHERE session_id = ?",
                (session_id,),
            ).fetchall()
        )
        return [FollowUpRun(followup_id=r[0], session_id=r[1], data=bytes(r[2])) for r in rows]

    # -- handoff packages ------------------------------------------------------------------

    @staticmethod
    def _insert_package(c: sqlite3.Connection, row: PackageRow) -> None:
        """Insert a package (inside the caller's transaction).

        Raises:
            ConflictError: a package with this id exists.
        """
        try:
            c.execute(
                "INSERT INTO packages (package_id, session_id, status, created_at) "
                "VALUES (?, ?, ?, ?)",
                (row.package_id, row.session_id, row.status, row.created_at),
            )
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorname != "SQLITE_CONSTRAINT_PRIMARYKEY":
                raise  # a NULL or other bad value: a StorageError, not a clash
            msg = f"handoff package {row.package_id!r} already exists"
            raise ConflictError(msg) from exc
        c.execute(
            "INSERT INTO package_data (package_id, data) VALUES (?, ?)",
            (row.package_id, row.data),
        )

    async def package_put(self, row: PackageRow) -> None:
        await self._run(lambda c: self._write(c, lambda c: self._insert_package(c, row)))

    async def package_get(self, package_id: str) -> PackageRow | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT p.package_id, p.session_id, d.data, p.status, p.created_at "
                "FROM packages AS p JOIN package_data AS d USING (package_id) "
                "WHERE p.package_id = ?",
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
