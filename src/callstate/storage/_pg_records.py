"""The PostgreSQL store's fleet-wide records: caller index, archive, follow-ups, packages."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConflictError
from ._pg_base import Conn, PostgresBase
from ._sql_rows import archive_from_row, archive_values, followup_from_row
from .base import ArchiveRow, FollowUp, FollowUpRun, PackageRow
from .figures import Figures
from .rollup import Tally, plan, window_sql

__all__ = ["PostgresRecords"]


def _package(row: Sequence[Any]) -> PackageRow:
    return PackageRow(
        package_id=row[0], session_id=row[1], data=bytes(row[2]), status=row[3], created_at=row[4]
    )


class PostgresRecords(PostgresBase):
    """Caller index, insert-only archive, follow-ups and handoff packages in PostgreSQL."""

    async def _insert_once(
        self, what: str, insert: Sequence[Any], get: str, key: str, same: Callable[[Any], bool]
    ) -> None:
        """Insert a row that must not exist yet; a retry finding ``same`` stored is a success.

        Raises:
            ConflictError: a row with this key exists (and is not this very insert).
        """

        async def op(conn: Conn, retrying: bool) -> bool:
            cur = await conn.execute(self._sql[what], insert, binary=True)
            if await cur.fetchone() is not None:
                return True
            if not retrying:
                return False
            cur = await conn.execute(self._sql[get], [key], binary=True)
            stored = await cur.fetchone()
            return stored is not None and same(stored)

        if not await self._run(what, op):
            kind = "archive record" if what == "archive_insert" else "handoff package"
            detail = "; archive rows are never overwritten" if what == "archive_insert" else ""
            msg = f"{kind} {key!r} already exists{detail}"
            raise ConflictError(msg)

    # -- caller index --------------------------------------------------------------------

    async def index_caller(self, caller_hash: str, session_id: str, at: float) -> None:
        await self._fetch("index_caller", self._sql["index_caller"], [caller_hash, session_id, at])

    async def lookup_caller(self, caller_hash: str) -> list[tuple[str, float]]:
        rows = await self._fetch("lookup_caller", self._sql["lookup_caller"], [caller_hash])
        return [(r[0], r[1]) for r in rows]

    # -- archive (insert-only) -------------------------------------------------------

    async def archive_insert(self, row: ArchiveRow) -> None:
        values = list(archive_values(row))
        await self._insert_once(
            "archive_insert",
            values,
            "archive_get",
            row.record_id,
            lambda r: archive_from_row(r) == row,
        )

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        rows = await self._fetch("archive_get", self._sql["archive_get"], [record_id])
        return archive_from_row(rows[0]) if rows else None

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
        sql = self._sql["archive_list"] + " AND ".join(where) + " ORDER BY ended_at DESC LIMIT %s"
        rows = await self._fetch("archive_list", sql, [*args, max(limit, 0)])
        return [archive_from_row(r) for r in rows]

    async def archive_figures(self, since: float, until: float) -> Figures:
        sql, args = window_sql(plan(since, until), self._s + ".", "%s")
        return Tally().take(await self._fetch("archive_figures", sql, args)).figures()

    # -- follow-ups ------------------------------------------------------------------

    async def followup_put(self, followup: FollowUp) -> None:
        f = followup
        values = [f.followup_id, f.session_id, f.due_at, f.payload, f.status]
        await self._fetch(
            "followup_put", self._sql["followup_put"], [*values, f.claimed_by, f.claimed_until]
        )

    async def followup_cancel(self, session_id: str) -> int:
        params = {"sid": session_id, "nonce": uuid.uuid4().hex}
        return len(await self._fetch("followup_cancel", self._sql["followup_cancel"], params))

    async def followup_claim(
        self, now: float, owner: str, claim_for: float, limit: int = 10
    ) -> list[FollowUp]:
        until = now + claim_for
        params = {"owner": owner, "until": until, "now": now, "limit": max(limit, 0)}

        async def op(conn: Conn, retrying: bool) -> list[Any]:
            cur = await conn.execute(
                self._sql["followup_claim"], {**params, "retrying": retrying}, binary=True
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
        async def op(conn: Conn, retrying: bool) -> bool:
            cur = await conn.execute(
                self._sql["followup_done"], [followup_id, owner, retrying], binary=True
            )
            return await cur.fetchone() is not None

        return await self._run("followup_done", op)

    async def followup_start(self, followup_id: str, owner: str, now: float) -> int:
        params = {"id": followup_id, "owner": owner, "now": now}
        rows = await self._fetch("followup_start", self._sql["followup_start"], params)
        return int(rows[0][0]) if rows else 0

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
        params = {
            "id": followup_id,
            "owner": owner,
            "status": "done" if retry_at is None else "pending",
            "retry_at": retry_at,
            "mark": mark,
            "error": error,
            "now": now,
        }
        return await self._flagged("followup_settle", params)

    async def followup_get(self, followup_id: str) -> FollowUp | None:
        rows = await self._fetch("followup_get", self._sql["followup_get"], [followup_id])
        return followup_from_row(rows[0]) if rows else None

    async def followup_list(self, limit: int = 100) -> list[FollowUp]:
        rows = await self._fetch("followup_list", self._sql["followup_list"], [max(limit, 0)])
        return [followup_from_row(r) for r in rows]

    async def followup_retry(self, followup_id: str, now: float) -> bool:
        return await self._flagged("followup_retry", {"id": followup_id, "now": now})

    async def _flagged(self, name: str, params: dict[str, Any]) -> bool:
        """Whether statement ``name`` matched a row; it is told whether it is a retry."""

        async def op(conn: Conn, retrying: bool) -> bool:
            cur = await conn.execute(self._sql[name], {**params, "retrying": retrying})
            return await cur.fetchone() is not None

        return await self._run(name, op)

    async def followup_record(self, run: FollowUpRun) -> None:
        values = [run.followup_id, run.session_id, run.data]
        await self._fetch("followup_record", self._sql["followup_record"], values)

    async def followup_runs(self, session_id: str) -> list[FollowUpRun]:
        rows = await self._fetch("followup_runs", self._sql["followup_runs"], [session_id])
        return [FollowUpRun(followup_id=r[0], session_id=r[1], data=bytes(r[2])) for r in rows]

    # -- handoff packages ------------------------------------------------------------

    async def package_put(self, row: PackageRow) -> None:
        values = [row.package_id, row.session_id, row.data, row.status, row.created_at]
        await self._insert_once(
            "package_put", values, "package_get", row.package_id, lambda r: _package(r) == row
        )

    async def package_get(self, package_id: str) -> PackageRow | None:
        rows = await self._fetch("package_get", self._sql["package_get"], [package_id])
        return _package(rows[0]) if rows else None

    async def package_transition(self, package_id: str, from_status: str, to_status: str) -> bool:
        params = {"to": to_status, "nonce": uuid.uuid4().hex, "id": package_id, "from": from_status}
        return bool(
            await self._fetch("package_transition", self._sql["package_transition"], params)
        )
