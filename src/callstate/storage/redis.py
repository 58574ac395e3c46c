"""Redis store: sessions shared by a fleet of workers through one Redis (or Redis Cluster).

Key layout, for the key prefix ``P`` (no braces in it)::

    P:{sid}:meta      hash: epoch, seq, agent, status, lease, claim id, times, snapshot_seq
    P:{sid}:ev        list: the journal, index i holds seq i + 1
    P:{sid}:snap      string: the latest snapshot
    P:{sid}:parts     hash: part number -> the parts that snapshot continues
    P:{sid}:callers   set: caller hashes the session is indexed under (for purge)
    P:sessions        set: every session id (the sweep's listing)
    P:caller:{h}      sorted set: session id -> time, per caller hash
    P:{archive}:...   records (hash per record, insert-only) and their time/session/caller indexes;
                      ``fig:`` sorted sets by closed_at and the ``roll:`` hourly/daily rollup
                      of fleet figures (``_redis_rollup``; follow-up lag's under {followups})
    P:{followups}:... follow-ups (hash per job) with due/claimed indexes, per-session sets
                      and the set of every follow-up's id (``ids``, read by followup_list);
                      ``runs:{sid}`` hashes what each of the session's follow-ups did
    P:pkg:{id}        hash: one handoff package
    P:migrations      hash: applied layout versions
    P:migrations:lock string: held by the opener running a layout migration (backfill)

``{sid}`` is the session id as a hash tag (behind a ``%``, with ``%``, ``{`` and ``}``
percent-escaped so any id makes a valid tag). Everything about one session shares it,
so every per-session script runs inside one Cluster slot. The archive and the follow-ups each live in one slot of
their own, so inserting a record with its indexes and claiming follow-ups are single
atomic scripts too; the global listings (``P:sessions``, caller sets) are written in the
same round trip but outside those scripts, and readers check every entry they list.
On a single Redis a group commit is one ``EVALSHA`` of a script that checks and appends
every session's batch; with ``cluster=True`` it is one pipelined ``EVALSHA`` per session,
so nothing crosses a slot. Either way: one round trip, each batch atomic.
A load is one ``MULTI``/``EXEC`` of plain reads (meta, snapshot, parts, the journal's
tail): a script would copy a long call's parts into Lua and out again. A tail longer
than the read's (256 events, a call not snapshotted for that long) is read by the
load script instead.

Durability: an acknowledged append is in the primary's memory; it survives a crash only
with ``appendonly yes`` (``appendfsync always``: fsynced before the reply; ``everysec``:
up to a second at risk if the machine fails). ``wait_aof`` adds ``WAITAOF`` after each
group commit; ``require_aof`` refuses a server without AOF.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

try:
    import redis.asyncio  # noqa: F401  (the driver: fail early, naming the extra)
except ImportError as exc:  # pragma: no cover - depends on the install
    msg = "the Redis store needs redis-py: pip install callstate[redis]"
    raise ImportError(msg) from exc
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import CallstateError, CodecError, ConfigError, ConflictError, StorageError
from ._redis_base import LAYOUT_VERSION
from ._redis_codec import fmt, pack_batch, pack_batches, pairs, session_fields, session_record
from ._redis_records import RedisRecords
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

__all__ = ["LAYOUT_VERSION", "RedisStore"]

#: events a load reads beside the snapshot in its one transaction; a longer tail (a call
#: not snapshotted for that long) is read again by the load script
_LOAD_TAIL: Final = 256


class RedisStore(StepwiseClaim, RedisRecords):
    """A store in Redis; many processes on many machines may share one.

    Args:
        url: ``redis://host:port/db`` or ``rediss://…``; ``?prefix=name`` sets ``prefix``.
        prefix: first segment of every key, so several apps (or test runs) share a server.
        retry_for: seconds to keep reconnecting and retrying an operation before it
            raises ``StorageError``.
        timeout: socket connect/read timeout of one attempt, in seconds.
        pool_size: most connections held open.
        wait_aof: ``(numlocal, numreplicas, timeout_ms)``: after every append, wait
            with ``WAITAOF`` until the AOF is fsynced that widely (Redis >= 7.2).
        require_aof: refuse to open unless the server has ``appendonly yes``.
        cluster: connect with the Redis Cluster client.
    """

    # -- sessions and journal ----------------------------------------------------------

    async def create(self, record: SessionRecord, first: Batch) -> None:
        refuse_packages(self.url, [first])
        sid = record.session_id
        if first.snapshot_parts:
            msg = f"redis store: a new session's first batch carries no snapshot parts (session {sid!r})"
            raise ConfigError(msg)
        if first.first_seq != 1:
            msg = f"a new session's first batch starts at seq 1, not {first.first_seq}"
            raise ConflictError(msg)
        fields = session_fields(record, first)
        snap = first.snapshot
        head = ["0" if snap is None else "1", snap or b"", len(fields) // 2, *fields]

        async def op(retrying: bool) -> int:
            args = ["1" if retrying else "0", *head, *first.events]
            created, _ = await self._pipeline(
                [
                    ("create", self._skeys(sid)[:3], args),
                    ("!SADD", [self._sessions_key], [sid]),
                ]
            )
            return int(created)

        if not await self._run("create", op):
            msg = f"session {sid!r} already exists"
            raise ConflictError(msg)

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        if not batches:
            return []
        refuse_packages(self.url, batches)

        async def op(retrying: bool) -> list[Any]:
            packed = [pack_batch(b, self._in_doubt.range(b, retrying)) for b in batches]
            calls: list[tuple[str, Sequence[str], Sequence[Any]]]
            if self.cluster or len(batches) == 1:  # one script per session: per-slot
                calls = [
                    ("append", self._jkeys(b.session_id), [p])
                    for b, p in zip(batches, packed, strict=True)
                ]
            else:  # one script for the whole group commit: far less to pack and parse
                keys = [k for b in batches for k in self._jkeys(b.session_id)]
                calls = [("append_many", keys, [pack_batches(packed)])]
            if self.wait_aof is not None:
                calls.append(("!WAITAOF", [], list(self.wait_aof)))
            results = await self._pipeline(calls)
            if self.wait_aof is not None:
                local, replicas = results.pop()
                if local < self.wait_aof[0] or replicas < self.wait_aof[1]:
                    msg = f"WAITAOF: fsynced on {local} local / {replicas} replicas, wanted {self.wait_aof[:2]}"
                    raise RedisTimeoutError(msg)  # retried: the appends are recognised
            return results if len(results) == len(batches) else list(results[0])

        try:
            results = await self._run("append", op)
        except (StorageError, asyncio.CancelledError):  # any attempt may have landed
            self._in_doubt.gave_up(batches)
            raise
        self._in_doubt.settled(batches)
        out: list[CallstateError | None] = []
        for b, result in zip(batches, results, strict=True):
            if isinstance(result, int):  # 0 written; 4, 5: (partly) stored by a lost reply
                self.replayed += result != 0
                out.append(None)
                continue
            code, epoch, seq = result
            if code == 6:
                msg = f"redis session {b.session_id!r}: stored epoch/seq/last_interaction_at are not numbers"
                out.append(CodecError(msg))
                continue
            error = check_batch(b.session_id, None if code == 1 else epoch, seq, b)
            out.append(error or ConflictError(f"session {b.session_id!r}: batch raced a writer"))
        return out

    async def load(self, session_id: str) -> Loaded:
        meta_key, events_key, snap_key, parts_key = self._jkeys(session_id)

        async def op(_: bool) -> list[Any]:
            # plain reads in one MULTI/EXEC (one view, one round trip): the load script
            # copies a long call's parts into Lua strings and out again (3 ms at 10,000 events)
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(meta_key)
                pipe.get(snap_key)
                pipe.llen(events_key)
                pipe.lrange(events_key, -_LOAD_TAIL, -1)
                pipe.hgetall(parts_key)
                return list(await pipe.execute())

        meta, snap, length, tail, parts = await self._run("load", op)
        if not meta:
            raise not_found(session_id)
        record = session_record(session_id, meta)
        after = 0 if snap is None else record.snapshot_seq  # events[i] holds seq i + 1
        if length - after > len(tail):  # a tail longer than the read: the script reads it
            return await self._load_by_script(session_id)
        return Loaded(
            record=record,
            snapshot=snap,
            events=tail[len(tail) - (length - after) :] if length > after else [],
            snapshot_parts={int(n): bytes(d) for n, d in parts.items()},
        )

    async def _load_by_script(self, session_id: str) -> Loaded:
        res = await self._script("load", "load", self._jkeys(session_id))
        if not res:
            raise not_found(session_id)
        meta, snaps, events, parts = res
        return Loaded(
            record=session_record(session_id, pairs(meta)),
            snapshot=snaps[0] if snaps else None,
            events=list(events),
            snapshot_parts={int(n): bytes(d) for n, d in pairs(parts).items()},
        )

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        keys = self._skeys(session_id)[:2]
        found, events = await self._script("read_events", "read_events", keys, max(after_seq, 0))
        if not found:
            raise not_found(session_id)
        return list(events)

    async def get(self, session_id: str) -> SessionRecord | None:
        meta = await self._hash("get", self._skeys(session_id)[0])
        return session_record(session_id, meta) if meta else None

    async def list_sessions(
        self,
        *,
        statuses: Sequence[str] | None = None,
        lease_before: float | None = None,
        interaction_before: float | None = None,
        limit: int = 1000,
    ) -> list[SessionRecord]:
        async def op(_: bool) -> list[SessionRecord]:
            ids = sorted(m.decode() for m in await self._client.smembers(self._sessions_key))
            rows: list[SessionRecord] = []
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                pipe = self._client.pipeline(transaction=False)
                for sid in chunk:
                    pipe.hgetall(self._skeys(sid)[0])
                for sid, meta in zip(chunk, await pipe.execute(), strict=True):
                    if meta:  # ids whose session was purged in between are skipped
                        rows.append(session_record(sid, meta))
            return rows

        rows = [
            r
            for r in await self._run("list_sessions", op)
            if (statuses is None or r.status in statuses)
            and (lease_before is None or r.lease_until < lease_before)
            and (interaction_before is None or r.last_interaction_at < interaction_before)
        ]
        rows.sort(key=lambda r: r.last_interaction_at, reverse=True)
        return rows[:limit]

    @property
    def atomic_claims(self) -> bool:
        """True: a claim with a batch and no package is one script, the claim and its
        batch stored together or not at all (not with ``wait_aof``, which waits after
        each append: such a claim goes step by step)."""
        return self.wait_aof is None

    async def _claim_alone(
        self,
        session_id: str,
        expected_epoch: int,
        owner: str,
        lease_until: float,
        then: Batch,
        claim_id: str,
    ) -> int | None:
        if not self.atomic_claims:
            return None
        refuse_packages(self.url, [then])
        args = [expected_epoch, owner, fmt(lease_until), claim_id]
        code, value = await self._script(
            "claim", "claim_then", self._jkeys(session_id), *args, pack_batch(then, (0, 0))
        )
        if code == 0:
            return int(value)
        if code == 1:
            raise not_found(session_id)
        if code == 2:
            raise stale_claim(session_id, expected_epoch, int(value))
        if code == 6:
            msg = f"redis session {session_id!r}: stored epoch/seq/last_interaction_at are not numbers"
            raise CodecError(msg)
        error = check_batch(session_id, then.epoch, int(value), then)  # code 3: seq
        if error is None:
            msg = f"session {session_id!r}: batch raced a writer"
            error = ConflictError(msg)
        raise error

    async def _claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float, claim_id: str
    ) -> int:
        keys = self._skeys(session_id)[:1]
        args = [expected_epoch, owner, fmt(lease_until), claim_id]
        code, epoch = await self._script("claim", "claim", keys, *args)
        if code == 1:
            raise not_found(session_id)
        if code == 2:
            raise stale_claim(session_id, expected_epoch, int(epoch))
        return int(epoch)

    async def _claimed_as(self, session_id: str, epoch: int, claim_id: str) -> bool:
        key = self._skeys(session_id)[0]
        stored = await self._run("claim", lambda _: self._client.hmget(key, "epoch", "claim_id"))
        return [str(epoch).encode(), claim_id.encode()] == list(stored)

    async def renew_leases(self, owner: str, session_ids: Sequence[str], until: float) -> list[str]:
        if not session_ids:
            return []
        calls = [("renew", self._skeys(s)[:1], [owner, fmt(until)]) for s in session_ids]
        held = await self._run("renew_leases", lambda _: self._pipeline(calls))
        return [sid for sid, ok in zip(session_ids, held, strict=True) if ok]

    async def release_lease(self, session_id: str, owner: str) -> None:
        await self._script("release_lease", "release", self._skeys(session_id)[:1], owner)

    async def purge(self, session_id: str) -> None:
        keys = self._skeys(session_id)

        async def op(_: bool) -> None:
            # the caller set goes last, so a retry after a lost reply still finds the
            # caller entries it has to remove
            callers = await self._client.smembers(keys[3])
            pipe = self._client.pipeline(transaction=False)
            pipe.srem(self._sessions_key, session_id)
            for h in callers:
                pipe.zrem(self._caller_key(h.decode()), session_id)
            await pipe.execute()
            await self._pipeline([("purge", keys, [])])

        await self._run("purge", op)
