"""The Redis store's plumbing: options, connection, key names, scripts and retrying."""

from __future__ import annotations

import hashlib
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio import connection as _connection
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

from ..errors import ConfigError, StorageError
from ._options import check_server_options, check_text, pop_url_option
from ._redis_codec import fmt, tag
from ._redis_scripts import SCRIPTS
from ._retry import InDoubt, Retrying

__all__ = ["LAYOUT_VERSION", "RedisBase"]

_T = TypeVar("_T")

#: Version of the key layout; ``open()`` records it in ``P:migrations``.
LAYOUT_VERSION = 3  # 2: P:{sid}:parts, the parts a snapshot continues; 3: the rollup,
# and P:{followups}:ids, every follow-up's id

_SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}
_TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    TryAgainError,
    NoScriptError,
)


@cache
def _url_keys() -> frozenset[str]:
    """The query keys redis-py's connections take (any other is a typo)."""
    names = {"connection_class"}  # set by rediss://; pool size and timeout are ours
    for cls in (_connection.AbstractConnection, _connection.Connection, _connection.SSLConnection):
        names.update(inspect.signature(cls.__init__).parameters)
    return frozenset(names - {"self", "args", "kwargs", "socket_timeout", "socket_connect_timeout"})


def _check_client_url(url: str) -> None:
    """Refuse what redis-py would refuse only on connecting: bad db, port, query keys.

    Raises:
        ConfigError: the message names the URL and the part that is wrong.
    """
    db = urlsplit(url).path.lstrip("/")
    if db and not (db.isascii() and db.isdigit()):
        msg = f"redis store url {url!r}: the database `{db}` must be a number"
        raise ConfigError(msg)
    try:
        keys = _connection.parse_url(url)
    except ValueError as exc:
        msg = f"redis store url {url!r} is malformed: {exc}"
        raise ConfigError(msg) from exc
    unknown = sorted(set(keys) - _url_keys())
    if unknown:
        msg = f"redis store url {url!r}: unknown query option(s) {unknown}"
        raise ConfigError(msg)


def _check_flags(*, wait_aof: object, require_aof: object, cluster: object) -> None:
    """Refuse a ``wait_aof`` that is not three ints >= 0, and flags that are not bools.

    Raises:
        ConfigError: the message names the option and the value.
    """
    if wait_aof is not None and not (
        isinstance(wait_aof, tuple)
        and len(wait_aof) == 3
        and all(type(n) is int and n >= 0 for n in wait_aof)
    ):
        msg = f"wait_aof must be None or (numlocal, numreplicas, timeout_ms) ints >= 0, got {wait_aof!r:.80}"
        raise ConfigError(msg)
    for name, flag in (("require_aof", require_aof), ("cluster", cluster)):
        if not isinstance(flag, bool):
            msg = f"{name} must be True or False, got {flag!r:.80}"
            raise ConfigError(msg)


class RedisBase:
    """Options, the client, key names and one retrying way to run commands and scripts.

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
        self._client_url, url_prefix = pop_url_option(url, ("redis", "rediss"), "prefix")
        _check_client_url(self._client_url)
        if prefix is not None:
            check_text(prefix, "prefix")
        self.prefix = prefix or url_prefix or "callstate"
        if any(c in self.prefix for c in "{}"):
            msg = f"redis key prefix must hold no braces, got {self.prefix!r}"
            raise ConfigError(msg)
        check_server_options(pool_size=pool_size, retry_for=retry_for, timeout=timeout)
        _check_flags(wait_aof=wait_aof, require_aof=require_aof, cluster=cluster)
        if cluster and wait_aof is not None:
            msg = f"wait_aof={wait_aof!r} is not supported with cluster=True (WAITAOF is per node)"
            raise ConfigError(msg)
        self.url = url
        self.timeout = float(timeout)
        self.pool_size = pool_size
        self.wait_aof = wait_aof
        self.require_aof = require_aof
        self.cluster = cluster
        #: ``CLIENT SETNAME`` of this store's connections (find them in ``CLIENT LIST``).
        self.client_name = f"callstate-{uuid.uuid4().hex[:12]}"
        #: Batches found already (partly) stored by an attempt whose reply was lost.
        self.replayed = 0
        self._retrying = Retrying(
            f"redis store {url!r}", float(retry_for), _TRANSIENT, RedisError, self._recover
        )
        self._in_doubt = InDoubt()
        self._client: Any = None
        p = self.prefix
        self._sessions_key = f"{p}:sessions"
        self._arch = f"{p}:{{archive}}:"
        self._fu = f"{p}:{{followups}}:"

    @property
    def retry_for(self) -> float:
        """Seconds an operation is retried before it raises ``StorageError``."""
        return self._retrying.retry_for

    @property
    def retries(self) -> int:
        """Attempts repeated after a connection failure, since the store was made."""
        return self._retrying.retries

    # -- keys --------------------------------------------------------------------------

    def _skeys(self, sid: str) -> list[str]:
        """The session's meta, events, snapshot, callers and snapshot parts keys (one
        hash tag)."""
        base = f"{self.prefix}:{{{tag(sid)}}}:"
        return [base + "meta", base + "ev", base + "snap", base + "callers", base + "parts"]

    def _jkeys(self, sid: str) -> list[str]:
        """The session's meta, events, snapshot and snapshot parts keys (the journal's)."""
        keys = self._skeys(sid)
        return [keys[0], keys[1], keys[2], keys[4]]

    def _caller_key(self, caller_hash: str) -> str:
        return f"{self.prefix}:caller:{{{tag(caller_hash)}}}"

    def _pkg_key(self, package_id: str) -> str:
        return f"{self.prefix}:pkg:{{{tag(package_id)}}}"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),  # retrying is ours: bounded and idempotent
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
            versions = await self._run("open", self._setup)
            if LAYOUT_VERSION not in versions:  # may take long: each step retried on its own
                await self._migrate(bool(versions))
        except BaseException:
            await self.close()
            raise

    async def _setup(self, _: bool) -> set[int]:
        """Check the server and load the scripts; returns the prefix's layout versions."""
        c = self._client
        if self.wait_aof is not None:
            version = str((await c.info("server"))["redis_version"])
            if tuple(map(int, version.split(".")[:2])) < (7, 2):
                msg = f"wait_aof needs WAITAOF (Redis >= 7.2); the server is {version}"
                raise ConfigError(msg)
        if self.require_aof:
            aof = (await c.config_get("appendonly")).get("appendonly")
            if aof != "yes":
                msg = f"require_aof: the Redis server at {self.url!r} runs with appendonly={aof!r}, not 'yes'"
                raise ConfigError(msg)
        for src in SCRIPTS.values():
            await c.script_load(src)
        versions = {int(v) for v in await c.hkeys(f"{self.prefix}:migrations")}
        newest = max(versions, default=LAYOUT_VERSION)
        if newest > LAYOUT_VERSION:
            msg = (
                f"redis key layout version {newest} under prefix {self.prefix!r} is newer "
                f"than this callstate supports ({LAYOUT_VERSION}); upgrade callstate"
            )
            raise StorageError(msg)
        return versions

    async def _migrate(self, existing: bool) -> None:
        """Bring the prefix to ``LAYOUT_VERSION`` (``existing``: an older layout wrote it)."""
        key, now = f"{self.prefix}:migrations", fmt(time.time())
        await self._run("migrate", lambda _: self._client.hsetnx(key, str(LAYOUT_VERSION), now))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def schema_version(self) -> int:
        versions = await self._run(
            "schema_version", lambda _: self._client.hkeys(f"{self.prefix}:migrations")
        )
        return max((int(v) for v in versions), default=0)

    # -- running -----------------------------------------------------------------------

    async def _recover(self, exc: BaseException) -> None:
        if isinstance(exc, NoScriptError) and self._client is not None:
            for src in SCRIPTS.values():  # the server restarted and forgot them
                await self._client.script_load(src)

    async def _run(self, what: str, op: Callable[[bool], Awaitable[_T]]) -> _T:
        """``op(retrying)`` with reconnects and retries for up to ``retry_for`` seconds."""
        if self._client is None:
            msg = f"store {self.url!r} is not open; call `await store.open()` first"
            raise StorageError(msg)
        return await self._retrying.run(what, op)

    async def _script(
        self, what: str, name: str, keys: Sequence[str], *args: Any, flag: bool = False
    ) -> Any:
        """Run script ``name``; with ``flag``, its first argument says whether this is a retry."""

        async def op(retrying: bool) -> Any:
            pre = ("1" if retrying else "0",) if flag else ()
            sha = _SHAS[name]
            return await self._client.execute_command("EVALSHA", sha, len(keys), *keys, *pre, *args)

        return await self._run(what, op)

    async def _hash(self, what: str, key: str) -> dict[bytes, bytes]:
        return dict(await self._run(what, lambda _: self._client.hgetall(key)))

    async def _pipeline(
        self, calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run ``(script, keys, args)`` calls (``!COMMAND`` for a plain command) in one round trip."""
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
