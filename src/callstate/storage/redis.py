"""Redis store: sessions shared by a fleet of workers through one Redis (or Redis Cluster).

Key layout, for the key prefix ``P`` (no braces in it)::

    P:{sid}:meta      hash: epoch, seq, agent, status, lease, times, snapshot_seq
    P:{sid}:ev        list: the journal, index i holds seq i + 1
    P:{sid}:snap      string: the latest snapshot
    P:{sid}:callers   set: caller hashes the session is indexed under (for purge)
    P:sessions        set: every session id (the sweep's listing)
    P:caller:{h}      sorted set: session id -> time, per caller hash
    P:{archive}:...   records (hash per record, insert-only) and their time/session/caller indexes
    P:{followups}:... follow-ups (hash per job) with due/claimed indexes and per-session sets
    P:pkg:{id}        hash: one handoff package
    P:migrations      hash: applied layout versions

Everything about one session shares the hash tag ``{sid}``, so every per-session script
runs inside one Cluster slot. The archive and the follow-ups each live in one slot of
their own, so inserting a record with its indexes and claiming follow-ups are single
atomic scripts too; the global listings (``P:sessions``, caller sets) are written in the
same round trip but outside those scripts, and readers check every entry they list.
A group commit is one pipeline of one ``EVALSHA`` per session: one round trip,
per-session atomicity, and nothing that crosses a slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import (
        BusyLoadingError,
        NoScriptError,
        RedisError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the install
    msg = "the Redis store needs redis-py: pip install callstate[redis]"
    raise ImportError(msg) from exc

from ..errors import CallstateError, ConfigError, ConflictError, SessionNotFound, StorageError
from ._redis_scripts import SCRIPTS
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

__all__ = ["LAYOUT_VERSION", "RedisStore"]

_T = TypeVar("_T")

#: Version of the key layout; ``open()`` records it in ``P:migrations``.
LAYOUT_VERSION = 1

_RETRYABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    TryAgainError,
    TimeoutError,
)
_SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}


def _tag(value: str) -> str:
    """``value`` as a hash tag body: injective, never empty, never holding a brace."""
    return "%" + value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _f(value: float) -> str:
    return repr(float(value))


def _s(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _record(sid: str, meta: dict[bytes, bytes]) -> SessionRecord:
    return SessionRecord(
        session_id=sid,
        epoch=int(meta[b"epoch"]),
        seq=int(meta[b"seq"]),
        agent=meta.get(b"agent", b"").decode(),
        status=meta.get(b"status", b"active").decode(),
        caller_hash=_s(meta.get(b"caller_hash")),
        created_at=float(meta.get(b"created_at", b"0")),
        last_interaction_at=float(meta.get(b"last_interaction_at", b"0")),
        lease_owner=_s(meta.get(b"lease_owner")),
        lease_until=float(meta.get(b"lease_until", b"0")),
        snapshot_seq=int(meta.get(b"snapshot_seq", b"0")),
    )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _archive(row: dict[bytes, bytes]) -> ArchiveRow:
    return ArchiveRow(
        record_id=row[b"record_id"].decode(),
        session_id=row[b"session_id"].decode(),
        caller_hash=_s(row.get(b"caller_hash")),
        ended_at=float(row[b"ended_at"]),
        outcome=row[b"outcome"].decode(),
        data=row[b"data"],
    )


class RedisStore:
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

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str | None = None,
        retry_for: float = 5.0,
        timeout: float = 5.0,
        pool_size: int = 32,
        wait_aof: tuple[int, int, int] | None = None,
        require_aof: bool = False,
        cluster: bool = False,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            msg = f"redis store url {url!r} must start with redis:// or rediss://"
            raise ConfigError(msg)
        query = parse_qsl(parts.query, keep_blank_values=True)
        url_prefix = next((v for k, v in query if k == "prefix"), None)
        self._client_url = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"]))
        )
        self.prefix = prefix or url_prefix or "callstate"
        if not self.prefix or any(c in self.prefix for c in "{}"):
            msg = f"redis key prefix must be non-empty and hold no braces, got {self.prefix!r}"
            raise ConfigError(msg)
        for name, value in (("retry_for", retry_for), ("timeout", timeout)):
            if not value > 0:
                msg = f"{name} must be > 0 seconds, got {value!r}"
                raise ConfigError(msg)
        if pool_size < 1:
            msg = f"pool_size must be >= 1, got {pool_size!r}"
            raise ConfigError(msg)
        self.url = url
        self.retry_for = float(retry_for)
        self.timeout = float(timeout)
        self.pool_size = pool_size
        self.wait_aof = wait_aof
        self.require_aof = require_aof
        self.cluster = cluster
        #: ``CLIENT SETNAME`` of this store's connections (find them in ``CLIENT LIST``).
        self.client_name = f"callstate-{uuid.uuid4().hex[:12]}"
        #: Attempts repeated after a connection failure, since open.
        self.retries = 0
        #: Batches found already (partly) stored by an attempt whose reply was lost.
        self.replayed = 0
        self._client: Any = None
        self._doubt: dict[str, tuple[int, int, int]] = {}  # sid -> (epoch, lo, hi)
        p = self.prefix
        self._sessions_key = f"{p}:sessions"
        self._arch = f"{p}:{{archive}}:"
        self._fu = f"{p}:{{followups}}:"

    # -- keys --------------------------------------------------------------------------

    def _skeys(self, sid: str) -> list[str]:
        base = f"{self.prefix}:{{{_tag(sid)}}}:"
        return [base + "meta", base + "ev", base + "snap", base + "callers"]

    def _caller_key(self, caller_hash: str) -> str:
        return f"{self.prefix}:caller:{{{_tag(caller_hash)}}}"

    def _pkg_key(self, package_id: str) -> str:
        return f"{self.prefix}:pkg:{{{_tag(package_id)}}}"

    # -- plumbing ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),  # retrying is ours: bounded, idempotent
            "client_name": self.client_name,
        }
        if self.cluster:
            from redis.asyncio.cluster import RedisCluster

            self._client = RedisCluster.from_url(
                self._client_url, max_connections=self.pool_size, **options
            )
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                self._client_url, max_connections=self.pool_size, timeout=self.timeout, **options
            )
            self._client = aioredis.Redis.from_pool(pool)
        try:
            await self._run("open", self._setup)
        except BaseException:
            await self.close()
            raise

    async def _setup(self, _retrying: bool) -> None:
        c = self._client
        if self.require_aof or self.wait_aof is not None:
            info = await c.info("server")
            version = tuple(int(x) for x in str(info["redis_version"]).split(".")[:2])
            if self.wait_aof is not None and version < (7, 2):
                msg = (
                    f"wait_aof needs WAITAOF (Redis >= 7.2); the server is {info['redis_version']}"
                )
                raise ConfigError(msg)
            if self.require_aof:
                conf = await c.config_get("appendonly")
                if conf.get("appendonly") != "yes":
                    msg = f"require_aof: the Redis server at {self.url!r} runs with appendonly={conf.get('appendonly')!r}, not 'yes'"
                    raise ConfigError(msg)
        await self._load_scripts()
        key = f"{self.prefix}:migrations"
        await c.hsetnx(key, str(LAYOUT_VERSION), _f(time.time()))
        versions = [int(v) for v in await c.hkeys(key)]
        if max(versions) > LAYOUT_VERSION:
            msg = (
                f"redis key layout version {max(versions)} under prefix {self.prefix!r} is newer "
                f"than this callstate supports ({LAYOUT_VERSION}); upgrade callstate"
            )
            raise StorageError(msg)

    async def _load_scripts(self) -> None:
        for src in SCRIPTS.values():
            await self._client.script_load(src)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def schema_version(self) -> int:
        async def op(_: bool) -> int:
            return max(
                (int(v) for v in await self._client.hkeys(f"{self.prefix}:migrations")), default=0
            )

        return await self._run("schema_version", op)

    async def _run(self, what: str, op: Callable[[bool], Awaitable[_T]]) -> _T:
        """Run ``op(retrying)``, reconnecting and retrying for up to ``retry_for`` seconds."""
        if self._client is None:
            msg = f"store {self.url!r} is not open; call `await store.open()` first"
            raise StorageError(msg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay, attempt = 0.01, 0
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.05)):
                    return await op(attempt > 0)
            except NoScriptError:  # the server restarted and lost its script cache
                last: BaseException = NoScriptError("NOSCRIPT")
                try:
                    await self._load_scripts()
                except _RETRYABLE as exc:
                    last = exc
            except _RETRYABLE as exc:
                last = exc
            except RedisError as exc:
                msg = f"redis store {self.url!r}: {what} failed: {exc}"
                raise StorageError(msg) from exc
            now = loop.time()
            if now >= deadline:
                msg = f"redis store {self.url!r}: {what} failed for {self.retry_for:.1f}s: {last!r}"
                raise StorageError(msg) from last
            attempt += 1
            self.retries += 1
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, 0.25)

    async def _eval(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        return await self._client.execute_command("EVALSHA", _SHAS[name], len(keys), *keys, *args)

    async def _pipeline(
        self, calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run ``(script, keys, args)`` calls in one round trip; raise the first error."""
        pipe = self._client.pipeline(transaction=False)
        for name, keys, args in calls:
            if name.startswith("!"):
                pipe.execute_command(name[1:], *keys, *args)
            else:
                pipe.execute_command("EVALSHA", _SHAS[name], len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    # -- sessions and journal ----------------------------------------------------------

    async def create(self, record: SessionRecord, first: Batch) -> None:
        sid = record.session_id
        if first.first_seq != 1:
            msg = f"a new session's first batch starts at seq 1, not {first.first_seq}"
            raise ConflictError(msg)
        fields: dict[str, str | bytes] = {
            "epoch": str(first.epoch),
            "seq": str(first.last_seq),
            "agent": first.agent or record.agent,
            "status": first.status,
            "created_at": _f(record.created_at),
            "last_interaction_at": _f(max(record.last_interaction_at, first.last_interaction_at)),
            "lease_until": _f(record.lease_until),
            "snapshot_seq": str(first.snapshot_seq if first.snapshot is not None else 0),
        }
        if record.caller_hash is not None:
            fields["caller_hash"] = record.caller_hash
        if record.lease_owner is not None:
            fields["lease_owner"] = record.lease_owner
        flat = [x for kv in fields.items() for x in kv]
        snap = first.snapshot

        async def op(retrying: bool) -> int:
            args = [
                "1" if retrying else "0",
                "0" if snap is None else "1",
                snap or b"",
                len(fields),
            ]
            result = await self._pipeline(
                [
                    ("create", self._skeys(sid)[:3], [*args, *flat, *first.events]),
                    ("!SADD", [self._sessions_key], [sid]),
                ]
            )
            return int(result[0])

        if await self._run("create", op) == 0:
            msg = f"session {sid!r} already exists"
            raise ConflictError(msg)

    def _doubt_range(self, b: Batch, retrying: bool) -> tuple[int, int]:
        """Seqs of ``b``'s session this store may have committed without seeing the reply."""
        lo, hi = (b.first_seq, b.last_seq) if retrying else (0, 0)
        d = self._doubt.get(b.session_id)
        if d is not None and d[0] == b.epoch:
            lo, hi = (min(lo, d[1]), max(hi, d[2])) if retrying else (d[1], d[2])
        return lo, hi

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        if not batches:
            return []

        async def op(retrying: bool) -> list[Any]:
            calls: list[tuple[str, Sequence[str], Sequence[Any]]] = []
            for b in batches:
                meta = [b.epoch, b.first_seq, b.last_seq, b.agent, b.status]
                meta += [_f(b.last_interaction_at), b.snapshot_seq]
                meta += ["0" if b.snapshot is None else "1", b.snapshot or b""]
                args = [*meta, *self._doubt_range(b, retrying), *b.events]
                calls.append(("append", self._skeys(b.session_id)[:3], args))
            if self.wait_aof is not None:
                calls.append(("!WAITAOF", [], list(self.wait_aof)))
            results = await self._pipeline(calls)
            if self.wait_aof is not None:
                local, replicas = results.pop()
                if local < self.wait_aof[0] or replicas < self.wait_aof[1]:
                    msg = f"WAITAOF: fsynced on {local} local / {replicas} replicas, wanted {self.wait_aof[:2]}"
                    raise RedisTimeoutError(msg)
            return results

        try:
            results = await self._run("append", op)
        except StorageError:
            for b in batches:  # any attempt may have landed: remember where
                lo, hi = self._doubt_range(b, True)
                self._doubt[b.session_id] = (b.epoch, lo, hi)
            raise
        out: list[CallstateError | None] = []
        for b, (code, epoch, seq) in zip(batches, results, strict=True):
            self._doubt.pop(b.session_id, None)
            if code in (0, 4, 5):
                self.replayed += code != 0
                out.append(None)
            else:
                out.append(
                    check_batch(b.session_id, None if code == 1 else epoch, seq, b)
                    or ConflictError(f"session {b.session_id!r}: batch raced another writer")
                )
        return out

    async def load(self, session_id: str) -> Loaded:
        async def op(_: bool) -> Any:
            return await self._eval("load", self._skeys(session_id)[:3])

        res = await self._run("load", op)
        if not res:
            msg = f"session {session_id!r} not found in the store"
            raise SessionNotFound(msg, session_id=session_id)
        meta, snaps, events = res
        return Loaded(
            record=_record(session_id, _pairs(meta)),
            snapshot=snaps[0] if snaps else None,
            events=list(events),
        )

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        async def op(_: bool) -> Any:
            return await self._eval("read_events", self._skeys(session_id)[:2], max(after_seq, 0))

        found, events = await self._run("read_events", op)
        if not found:
            msg = f"session {session_id!r} not found in the store"
            raise SessionNotFound(msg, session_id=session_id)
        return list(events)

    async def get(self, session_id: str) -> SessionRecord | None:
        async def op(_: bool) -> dict[bytes, bytes]:
            return dict(await self._client.hgetall(self._skeys(session_id)[0]))

        meta = await self._run("get", op)
        return _record(session_id, meta) if meta else None

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
                        rows.append(_record(sid, meta))
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

    async def claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float
    ) -> int:
        async def op(_: bool) -> Any:
            return await self._eval(
                "claim", self._skeys(session_id)[:1], expected_epoch, owner, _f(lease_until)
            )

        code, epoch = await self._run("claim", op)
        if code == 1:
            msg = f"session {session_id!r} not found in the store"
            raise SessionNotFound(msg, session_id=session_id)
        if code == 2:
            raise stale_claim(session_id, expected_epoch, int(epoch))
        return int(epoch)

    async def renew_leases(self, owner: str, session_ids: Sequence[str], until: float) -> list[str]:
        if not session_ids:
            return []
        calls = [("renew", self._skeys(s)[:1], [owner, _f(until)]) for s in session_ids]

        async def op(_: bool) -> list[Any]:
            return await self._pipeline(calls)

        held = await self._run("renew_leases", op)
        return [sid for sid, ok in zip(session_ids, held, strict=True) if ok]

    async def release_lease(self, session_id: str, owner: str) -> None:
        async def op(_: bool) -> None:
            await self._eval("release", self._skeys(session_id)[:1], owner)

        await self._run("release_lease", op)

    async def purge(self, session_id: str) -> None:
        async def op(_: bool) -> None:
            callers = await self._eval("purge", self._skeys(session_id))
            pipe = self._client.pipeline(transaction=False)
            pipe.srem(self._sessions_key, session_id)
            for h in callers:
                pipe.zrem(self._caller_key(h.decode()), session_id)
            await pipe.execute()

        await self._run("purge", op)

    # -- caller index --------------------------------------------------------------------

    async def index_caller(self, caller_hash: str, session_id: str, at: float) -> None:
        async def op(_: bool) -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(self._caller_key(caller_hash), {session_id: at})
            pipe.sadd(self._skeys(session_id)[3], caller_hash)
            await pipe.execute()

        await self._run("index_caller", op)

    async def lookup_caller(self, caller_hash: str) -> list[tuple[str, float]]:
        async def op(_: bool) -> list[tuple[bytes, float]]:
            return list(
                await self._client.zrevrange(self._caller_key(caller_hash), 0, -1, withscores=True)
            )

        return [(m.decode(), float(s)) for m, s in await self._run("lookup_caller", op)]

    # -- archive (insert-only) -------------------------------------------------------

    async def archive_insert(self, row: ArchiveRow) -> None:
        a = self._arch
        keys = [a + "rec:" + row.record_id, a + "time", a + "sess:" + row.session_id]
        fields: list[Any] = ["record_id", row.record_id, "session_id", row.session_id]
        fields += ["ended_at", _f(row.ended_at), "outcome", row.outcome, "data", row.data]
        if row.caller_hash is not None:
            keys.append(a + "caller:" + row.caller_hash)
            fields += ["caller_hash", row.caller_hash]

        async def op(retrying: bool) -> Any:
            return await self._eval("archive_insert", keys, "1" if retrying else "0", *fields)

        if await self._run("archive_insert", op) == 0:
            msg = f"archive record {row.record_id!r} already exists; archive rows are never overwritten"
            raise ConflictError(msg)

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        async def op(_: bool) -> dict[bytes, bytes]:
            return dict(await self._client.hgetall(self._arch + "rec:" + record_id))

        row = await self._run("archive_get", op)
        return _archive(row) if row else None

    async def archive_list(
        self,
        *,
        session_id: str | None = None,
        caller_hash: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ArchiveRow]:
        a = self._arch
        if session_id is not None:
            index = a + "sess:" + session_id
        elif caller_hash is not None:
            index = a + "caller:" + caller_hash
        else:
            index = a + "time"
        args = [a + "rec:", "-inf" if since is None else _f(since), max(limit, 0)]
        args += [session_id or "", caller_hash or ""]

        async def op(_: bool) -> Any:
            return await self._eval("archive_list", [index], *args) if limit > 0 else []

        return [_archive(_pairs(r)) for r in await self._run("archive_list", op)]

    # -- follow-ups ------------------------------------------------------------------

    def _fu_keys(self, followup_id: str, session_id: str) -> list[str]:
        fu = self._fu
        return [fu + "f:" + followup_id, fu + "due", fu + "claimed", fu + "sess:" + session_id]

    async def followup_put(self, followup: FollowUp) -> None:
        f = followup
        fields: list[Any] = ["followup_id", f.followup_id, "session_id", f.session_id]
        fields += ["status", f.status, "due_at", _f(f.due_at), "payload", f.payload]
        fields += ["claimed_until", _f(f.claimed_until)]
        if f.claimed_by is not None:
            fields += ["claimed_by", f.claimed_by]
        keys = self._fu_keys(f.followup_id, f.session_id)

        async def op(_: bool) -> None:
            await self._eval("followup_put", keys, self._fu + "sess:", *fields)

        await self._run("followup_put", op)

    async def followup_cancel(self, session_id: str) -> int:
        async def op(_: bool) -> Any:
            keys = [self._fu + "sess:" + session_id, self._fu + "due"]
            return await self._eval("followup_cancel", keys, self._fu + "f:")

        return int(await self._run("followup_cancel", op))

    async def followup_claim(
        self, now: float, owner: str, claim_for: float, limit: int = 10
    ) -> list[FollowUp]:
        until = _f(now + claim_for)

        async def op(retrying: bool) -> Any:
            keys = [self._fu + "due", self._fu + "claimed"]
            args = [self._fu + "f:", _f(now), owner, until, max(limit, 0), "1" if retrying else "0"]
            return await self._eval("followup_claim", keys, *args)

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
            for fid, sid, due, payload in await self._run("followup_claim", op)
        ]

    async def followup_done(self, followup_id: str, owner: str) -> bool:
        async def op(retrying: bool) -> Any:
            keys = [self._fu + "f:" + followup_id, self._fu + "claimed"]
            return await self._eval("followup_done", keys, owner, "1" if retrying else "0")

        return bool(await self._run("followup_done", op))

    # -- handoff packages ------------------------------------------------------------

    async def package_put(self, row: PackageRow) -> None:
        fields: list[Any] = ["package_id", row.package_id, "session_id", row.session_id]
        fields += ["data", row.data, "status", row.status, "created_at", _f(row.created_at)]

        async def op(retrying: bool) -> Any:
            key = self._pkg_key(row.package_id)
            return await self._eval("package_put", [key], "1" if retrying else "0", *fields)

        if await self._run("package_put", op) == 0:
            msg = f"handoff package {row.package_id!r} already exists"
            raise ConflictError(msg)

    async def package_get(self, package_id: str) -> PackageRow | None:
        async def op(_: bool) -> dict[bytes, bytes]:
            return dict(await self._client.hgetall(self._pkg_key(package_id)))

        row = await self._run("package_get", op)
        if not row:
            return None
        return PackageRow(
            package_id=row[b"package_id"].decode(),
            session_id=row[b"session_id"].decode(),
            data=row[b"data"],
            status=row[b"status"].decode(),
            created_at=float(row[b"created_at"]),
        )

    async def package_transition(self, package_id: str, from_status: str, to_status: str) -> bool:
        nonce = uuid.uuid4().hex  # lets a retry recognise its own earlier transition

        async def op(_: bool) -> Any:
            key = self._pkg_key(package_id)
            return await self._eval("package_transition", [key], from_status, to_status, nonce)

        return bool(await self._run("package_transition", op))
