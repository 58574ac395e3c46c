"""PostgreSQL store: sessions shared by a fleet of workers through one database.

psycopg 3 with an async connection pool, autocommit. Every write that must be atomic
is one statement (data-modifying CTEs), so it is one transaction and one round trip:
a group commit is a single conditional ``UPDATE … WHERE epoch = … AND seq = …``
joined with the inserts of the events and snapshots of the sessions it matched.
Schema changes are versioned migrations (``MIGRATIONS``) recorded in
``callstate_migrations``; the archive refuses UPDATE, DELETE and TRUNCATE by trigger.

Durability: an acknowledged append is a committed transaction; with the server's
defaults (``fsync = on``, ``synchronous_commit = on``) it survives a crash of the
server or the machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

try:
    import psycopg  # noqa: F401  (the driver: fail early, naming the extra)
    import psycopg_pool  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    msg = "the PostgreSQL store needs psycopg 3: pip install callstate[postgres]"
    raise ImportError(msg) from exc

from ..errors import CallstateError, ConflictError, StorageError
from ._pg_base import Conn
from ._pg_codec import bytea_array, float8_array, int8_array, text_array
from ._pg_records import PostgresRecords
from ._pg_schema import MIGRATIONS
from ._sql_rows import session_from_row
from .base import (
    Batch,
    Loaded,
    SessionRecord,
    StepwiseClaim,
    check_batch,
    not_found,
    refuse_packages,
    stale_claim,
)

__all__ = ["MIGRATIONS", "PostgresStore"]


def _raced(b: Batch) -> ConflictError:
    return ConflictError(f"session {b.session_id!r}: batch raced another writer")


class PostgresStore(StepwiseClaim, PostgresRecords):
    """A store in PostgreSQL; many processes on many machines may share one database.

    Args:
        url: ``postgresql://user@host:port/dbname``; ``?schema=name`` sets ``schema``.
        schema: the schema holding callstate's tables (created and migrated on open).
        pool_size: most connections held open.
        retry_for: seconds to keep reconnecting and retrying an operation before it
            raises ``StorageError``.
        connect_timeout: seconds one connection attempt may take.
    """

    # -- sessions and journal ----------------------------------------------------------

    async def create(self, record: SessionRecord, first: Batch) -> None:
        refuse_packages(self.url, [first])
        sid = record.session_id
        if first.first_seq != 1:
            msg = f"a new session's first batch starts at seq 1, not {first.first_seq}"
            raise ConflictError(msg)
        row = [sid, first.epoch, first.last_seq, first.agent or record.agent, first.status]
        row += [record.caller_hash, record.created_at]
        row += [max(record.last_interaction_at, first.last_interaction_at), record.lease_owner]
        row += [record.lease_until, first.snapshot_seq if first.snapshot is not None else 0]
        seqs = list(range(1, first.last_seq + 1))
        snap = [first.snapshot] if first.snapshot is not None else []
        params = [*row, first.epoch, seqs, first.events, first.snapshot_seq, snap]
        params += [list(first.snapshot_parts), list(first.snapshot_parts.values())]

        async def op(conn: Conn, retrying: bool) -> bool:
            cur = await conn.execute(self._sql["create"], params, binary=True)
            created = await cur.fetchone()
            if created and created[0]:
                return True
            if not retrying:
                return False
            # a retried create whose first reply was lost: is what is stored ours?
            limit = len(first.events) + 1
            cur = await conn.execute(
                self._sql["created_events"], [sid, first.epoch, limit], binary=True
            )
            return [bytes(r[0]) for r in await cur.fetchall()] == list(first.events)

        if not await self._run("create", op):
            msg = f"session {sid!r} already exists"
            raise ConflictError(msg)

    async def _append_round(self, conn: Conn, batches: Sequence[tuple[Batch, int]]) -> set[str]:
        """Append each ``(batch, skip)``, its first ``skip`` events already stored; the ids that landed."""
        sids = [b.session_id for b, _ in batches]
        snaps = [b for b, _ in batches if b.snapshot is not None]
        ev_sids: list[str] = []
        ev_seqs: list[int] = []
        ev_epochs: list[int] = []
        ev_data: list[bytes] = []
        for b, skip in batches:
            n = len(b.events) - skip
            ev_sids += [b.session_id] * n
            ev_seqs += range(b.first_seq + skip, b.last_seq + 1)
            ev_epochs += [b.epoch] * n
            ev_data += b.events[skip:]
        params = [
            text_array(sids),
            int8_array([b.epoch for b, _ in batches]),
            int8_array([b.first_seq for b, _ in batches]),
            int8_array([b.last_seq for b, _ in batches]),
            int8_array([skip for _, skip in batches]),
            text_array([b.agent for b, _ in batches]),
            text_array([b.status for b, _ in batches]),
            float8_array([b.last_interaction_at for b, _ in batches]),
            int8_array([b.snapshot_seq if b.snapshot is not None else 0 for b, _ in batches]),
            text_array(ev_sids),
            int8_array(ev_seqs),
            int8_array(ev_epochs),
            bytea_array(ev_data),
        ]
        sql = self._sql["append_events"]
        if snaps:
            sql = self._sql["append"]
            params += [
                text_array([b.session_id for b in snaps]),
                int8_array([b.snapshot_seq for b in snaps]),
                bytea_array([b.snapshot or b"" for b in snaps]),
                text_array([b.session_id for b in snaps for _ in b.snapshot_parts]),
                int8_array([n for b in snaps for n in b.snapshot_parts]),
                bytea_array([d for b in snaps for d in b.snapshot_parts.values()]),
            ]
        cur = await conn.execute(sql, params, binary=True)
        return {r[0] for r in await cur.fetchall()}

    async def _stored_prefix(
        self, conn: Conn, b: Batch, seq: int, doubt: tuple[int, int]
    ) -> int | None:
        """How many of ``b``'s events are stored already as this writer's unacknowledged write."""
        upto = min(seq, b.last_seq)
        if not (doubt[0] <= b.first_seq <= upto <= doubt[1]):
            return None
        cur = await conn.execute(
            self._sql["stored_events"], [b.session_id, b.first_seq, upto], binary=True
        )
        have = [bytes(r[0]) for r in await cur.fetchall()]
        return len(have) if have and have == list(b.events[: len(have)]) else None

    async def _settle(
        self, conn: Conn, failed: list[Batch], retrying: bool
    ) -> list[CallstateError | None]:
        """Why each batch the conditional update missed was refused, or None if it is stored."""
        cur = await conn.execute(
            self._sql["append_check"], [[b.session_id for b in failed]], binary=True
        )
        stored = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
        out: list[CallstateError | None] = []
        rest: list[tuple[Batch, int]] = []
        for b in failed:
            epoch, seq = stored.get(b.session_id, (None, 0))
            error: CallstateError | None = check_batch(b.session_id, epoch, seq, b) or _raced(b)
            if epoch == b.epoch and b.first_seq <= seq:
                skip = await self._stored_prefix(conn, b, seq, self._in_doubt.range(b, retrying))
                if skip is not None:
                    self.replayed += 1
                    error = None
                    if skip < len(b.events):
                        rest.append((b, skip))
            out.append(error)
        if rest:
            landed = await self._append_round(conn, rest)
            missed = {b.session_id for b, _ in rest} - landed
            out = [
                _raced(b) if b.session_id in missed else e for b, e in zip(failed, out, strict=True)
            ]
        return out

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        if not batches:
            return []
        refuse_packages(self.url, batches)

        async def op(conn: Conn, retrying: bool) -> list[CallstateError | None]:
            out: list[CallstateError | None] = [None] * len(batches)
            todo = list(range(len(batches)))
            while todo:  # one batch per session per statement; a session's next waits a round
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
                if failed:
                    errors = await self._settle(conn, [batches[i] for i in failed], retrying)
                    for i, error in zip(failed, errors, strict=True):
                        out[i] = error
            return out

        try:
            results = await self._run("append", op)
        except (StorageError, asyncio.CancelledError):  # any attempt may have landed
            self._in_doubt.gave_up(batches)
            raise
        self._in_doubt.settled(batches)
        return results

    async def load(self, session_id: str) -> Loaded:
        rows = await self._fetch("load", self._sql["load"], [session_id, session_id])
        head = next((r for r in rows if r[0] is None), None)
        if head is None:
            raise not_found(session_id)
        return Loaded(
            record=session_from_row(head[1:]),
            snapshot=None if head[12] is None else bytes(head[12]),
            events=[bytes(e) for e in head[13]],
            snapshot_parts={r[0]: bytes(r[12]) for r in rows if r[0] is not None},
        )

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        rows = await self._fetch("read_events", self._sql["read_events"], [after_seq, session_id])
        if not rows:
            raise not_found(session_id)
        return [bytes(e) for e in rows[0][0]]

    async def get(self, session_id: str) -> SessionRecord | None:
        rows = await self._fetch("get", self._sql["get"], [session_id])
        return session_from_row(rows[0]) if rows else None

    async def list_sessions(
        self,
        *,
        statuses: Sequence[str] | None = None,
        lease_before: float | None = None,
        interaction_before: float | None = None,
        limit: int = 1000,
    ) -> list[SessionRecord]:
        where, args = ["true"], []
        minute = None  # the index holds the minute (migration 8); the exact time filters within it
        if interaction_before is not None and abs(interaction_before) < 2**52:
            minute = int(interaction_before / 60)
        for cond, value in (
            ("status = ANY(%s)", None if statuses is None else list(statuses)),
            ("lease_until < %s", lease_before),
            ("interaction_minute <= %s", minute),
            ("last_interaction_at < %s", interaction_before),
        ):
            if value is not None:
                where.append(cond)
                args.append(value)
        sql = self._sql["list_sessions"] + " AND ".join(where)
        sql += " ORDER BY interaction_minute DESC, last_interaction_at DESC LIMIT %s"
        return [
            session_from_row(r)
            for r in await self._fetch("list_sessions", sql, [*args, max(limit, 0)])
        ]

    #: a claim with a batch (no package, no snapshot) is one statement: the claim and
    #: the batch are stored together or not at all
    atomic_claims = True

    async def _claim_alone(
        self,
        session_id: str,
        expected_epoch: int,
        owner: str,
        lease_until: float,
        then: Batch,
        claim_id: str,
    ) -> int | None:
        if then.snapshot is not None or then.package is not None:
            return None  # step by step (the statement carries no snapshot)
        params: dict[str, Any] = {"owner": owner, "until": lease_until, "cid": claim_id}
        params |= {"sid": session_id, "expected": expected_epoch, "after": then.first_seq - 1}
        params |= {"last": then.last_seq, "agent": then.agent, "status": then.status}
        params |= {"lia": then.last_interaction_at}
        params |= {"seqs": int8_array(list(range(then.first_seq, then.last_seq + 1)))}
        params |= {"data": bytea_array(then.events)}
        rows = await self._fetch("claim", self._sql["claim_then"], params)
        if rows:
            return int(rows[0][0])
        # nothing was written; why, from a read after the statement (its own snapshot
        # may predate the write that made it miss)
        rows = await self._fetch("claim", self._sql["claim_state"], [session_id])
        if not rows:
            raise not_found(session_id)
        epoch, stored_id, seq = rows[0]
        if epoch == expected_epoch + 1 and stored_id == claim_id:
            return int(epoch)  # this very claim, sent again after its reply was lost
        if epoch != expected_epoch:
            raise stale_claim(session_id, expected_epoch, int(epoch))
        error = check_batch(session_id, then.epoch, int(seq), then) or _raced(then)
        raise error

    async def _claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float, claim_id: str
    ) -> int:
        params = {"owner": owner, "until": lease_until, "cid": claim_id}
        params |= {"sid": session_id, "expected": expected_epoch}
        (new, current, stored_id), *_ = await self._fetch("claim", self._sql["claim"], params)
        if new is not None:
            return int(new)
        if current is None:
            raise not_found(session_id)
        if current == expected_epoch + 1 and stored_id == claim_id:
            return int(current)  # this very claim, sent again after its reply was lost
        # the statement's snapshot may predate a racing claim: report at least one newer
        raise stale_claim(session_id, expected_epoch, max(int(current), expected_epoch + 1))

    async def _claimed_as(self, session_id: str, epoch: int, claim_id: str) -> bool:
        rows = await self._fetch("claim", self._sql["claimed_as"], [session_id, epoch, claim_id])
        return bool(rows)

    async def renew_leases(self, owner: str, session_ids: Sequence[str], until: float) -> list[str]:
        if not session_ids:
            return []
        params = [until, list(session_ids), owner]
        held = {r[0] for r in await self._fetch("renew_leases", self._sql["renew_leases"], params)}
        return [sid for sid in session_ids if sid in held]

    async def release_lease(self, session_id: str, owner: str) -> None:
        await self._fetch("release_lease", self._sql["release_lease"], [session_id, owner])

    async def purge(self, session_id: str) -> None:
        await self._fetch("purge", self._sql["purge"], {"sid": session_id})
