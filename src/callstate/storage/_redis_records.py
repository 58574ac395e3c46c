"""The Redis store's fleet-wide records: caller index, archive, follow-ups, packages.

The archive and the follow-ups each live under one hash tag (``{archive}``,
``{followups}``), so a record with its indexes, or a whole claim of follow-ups, is one
atomic script on one Cluster slot. Caller sets and packages are tagged per caller /
per package.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import ConflictError
from ._redis_codec import archive_fields, archive_row, fmt, followup_row, package_row, pairs
from ._redis_rollup import RedisRollup
from .base import ArchiveRow, FollowUp, FollowUpRun, PackageRow
from .figures import UNKNOWN_HEALTH

__all__ = ["RedisRecords"]


class RedisRecords(RedisRollup):
    """Caller index, insert-only archive, follow-ups and handoff packages in Redis (fleet
    figures: ``RedisRollup``)."""

    # -- caller index --------------------------------------------------------------------

    async def index_caller(self, caller_hash: str, session_id: str, at: float) -> None:
        async def op(_: bool) -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(self._caller_key(caller_hash), {session_id: at})
            pipe.sadd(self._skeys(session_id)[3], caller_hash)  # so purge can find it
            await pipe.execute()

        await self._run("index_caller", op)

    async def lookup_caller(self, caller_hash: str) -> list[tuple[str, float]]:
        key = self._caller_key(caller_hash)
        rows = await self._run(
            "lookup_caller", lambda _: self._client.zrevrange(key, 0, -1, withscores=True)
        )
        return [(m.decode(), float(s)) for m, s in rows]

    # -- archive (insert-only) -------------------------------------------------------

    async def archive_insert(self, row: ArchiveRow) -> None:
        a = self._arch
        keys = [a + "rec:" + row.record_id, a + "time", a + "sess:" + row.session_id]
        if row.caller_hash is not None:
            keys.append(a + "caller:" + row.caller_hash)
        if row.closed_at is not None:  # counted by archive_figures
            fig = a + "fig:"
            keys.append(fig + "h:" + (row.health or UNKNOWN_HEALTH))
            keys += [fig + "tools"] if row.tools else []
            keys += [fig + "in_doubt"] if row.in_doubt else []
            keys += [fig + "recover"] if row.recover_s is not None else []
            keys.append(fig + "classes")
        fields = archive_fields(row)
        if not await self._script("archive_insert", "archive_insert", keys, *fields, flag=True):
            msg = f"archive record {row.record_id!r} already exists; archive rows are never overwritten"
            raise ConflictError(msg)

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        row = await self._hash("archive_get", self._arch + "rec:" + record_id)
        return archive_row(row) if row else None

    async def archive_list(
        self,
        *,
        session_id: str | None = None,
        caller_hash: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ArchiveRow]:
        if limit <= 0:
            return []
        a = self._arch
        if session_id is not None:
            index = a + "sess:" + session_id
        elif caller_hash is not None:
            index = a + "caller:" + caller_hash
        else:
            index = a + "time"
        args = [a + "rec:", "-inf" if since is None else fmt(since), limit]
        rows = await self._script(
            "archive_list", "archive_list", [index], *args, session_id or "", caller_hash or ""
        )
        return [archive_row(pairs(r)) for r in rows]

    # -- follow-ups ------------------------------------------------------------------

    async def followup_put(self, followup: FollowUp) -> None:
        f, fu = followup, self._fu
        fields: list[Any] = ["followup_id", f.followup_id, "session_id", f.session_id]
        fields += ["status", f.status, "due_at", fmt(f.due_at), "payload", f.payload]
        fields += ["claimed_until", fmt(f.claimed_until)]
        if f.claimed_by is not None:
            fields += ["claimed_by", f.claimed_by]
        keys = [fu + "f:" + f.followup_id, fu + "due", fu + "claimed", fu + "sess:" + f.session_id]
        keys.append(fu + "ids")
        await self._script("followup_put", "followup_put", keys, fu + "sess:", *fields)

    async def followup_cancel(self, session_id: str) -> int:
        keys = [self._fu + "sess:" + session_id, self._fu + "due"]
        nonce = uuid.uuid4().hex  # lets a retry count what its lost attempt cancelled
        args = [self._fu + "f:", nonce]
        return int(await self._script("followup_cancel", "followup_cancel", keys, *args))

    async def followup_claim(
        self, now: float, owner: str, claim_for: float, limit: int = 10
    ) -> list[FollowUp]:
        until = fmt(now + claim_for)
        keys = [self._fu + "due", self._fu + "claimed"]
        args = [self._fu + "f:", fmt(now), owner, until, max(limit, 0)]
        rows = await self._script("followup_claim", "followup_claim", keys, *args, flag=True)
        return [
            FollowUp(
                followup_id=fid.decode(),
                session_id=sid.decode(),
                due_at=float(due),
                payload=payload,
                status="claimed",
                claimed_by=owner,
                claimed_until=float(until),
            )
            for fid, sid, due, payload in rows
        ]

    async def followup_done(self, followup_id: str, owner: str) -> bool:
        keys = [self._fu + "f:" + followup_id, self._fu + "claimed"]
        return bool(await self._script("followup_done", "followup_done", keys, owner, flag=True))

    async def followup_start(self, followup_id: str, owner: str, now: float) -> int:
        keys = [self._fu + "f:" + followup_id]
        return int(await self._script("followup_start", "followup_start", keys, owner, fmt(now)))

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
        fu = self._fu
        keys = [fu + "f:" + followup_id, fu + "due", fu + "claimed", fu + "lag"]
        when = "" if retry_at is None else fmt(retry_at)
        flag = "0" if error is None else "1"
        args = [owner, mark, fmt(now), when, flag, error or ""]
        return bool(
            await self._script("followup_settle", "followup_settle", keys, *args, flag=True)
        )

    async def followup_get(self, followup_id: str) -> FollowUp | None:
        return followup_row(await self._hash("followup_get", self._fu + "f:" + followup_id))

    async def followup_list(self, limit: int = 100) -> list[FollowUp]:
        # the prefix's own index, never a SCAN of the server's whole keyspace
        ids = await self._run("followup_list", lambda _: self._client.smembers(self._fu + "ids"))
        out = []
        for fid in ids:
            f = followup_row(await self._hash("followup_list", self._fu + "f:" + fid.decode()))
            if f is not None:
                out.append(f)
        out.sort(key=lambda f: f.due_at, reverse=True)
        return out[: max(limit, 0)]

    async def followup_retry(self, followup_id: str, now: float) -> bool:
        keys = [self._fu + "f:" + followup_id, self._fu + "due"]
        return bool(
            await self._script("followup_retry", "followup_retry", keys, fmt(now), flag=True)
        )

    async def followup_record(self, run: FollowUpRun) -> None:
        key = self._fu + "runs:" + run.session_id  # HSETNX: a retry keeps the first
        await self._run(
            "followup_record", lambda _: self._client.hsetnx(key, run.followup_id, run.data)
        )

    async def followup_runs(self, session_id: str) -> list[FollowUpRun]:
        key = self._fu + "runs:" + session_id
        rows = await self._hash("followup_runs", key)
        return [
            FollowUpRun(followup_id=fid.decode(), session_id=session_id, data=bytes(data))
            for fid, data in rows.items()
        ]

    # -- handoff packages ------------------------------------------------------------

    async def package_put(self, row: PackageRow) -> None:
        fields: list[Any] = ["package_id", row.package_id, "session_id", row.session_id]
        fields += ["data", row.data, "status", row.status, "created_at", fmt(row.created_at)]
        key = self._pkg_key(row.package_id)
        if not await self._script("package_put", "package_put", [key], *fields, flag=True):
            msg = f"handoff package {row.package_id!r} already exists"
            raise ConflictError(msg)

    async def package_get(self, package_id: str) -> PackageRow | None:
        row = await self._hash("package_get", self._pkg_key(package_id))
        return package_row(row) if row else None

    async def package_transition(self, package_id: str, from_status: str, to_status: str) -> bool:
        nonce = uuid.uuid4().hex  # lets a retry recognise its own earlier transition
        key = self._pkg_key(package_id)
        args = [from_status, to_status, nonce]
        return bool(await self._script("package_transition", "package_transition", [key], *args))
