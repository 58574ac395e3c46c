"""The PostgreSQL store's plumbing: options, the pool, migrations and retrying."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from ..errors import ConfigError, StorageError
from ._options import check_server_options, pop_url_option
from ._pg_codec import register
from ._pg_schema import MIGRATIONS
from ._pg_sql import STATEMENTS
from ._retry import InDoubt, Retrying

__all__ = ["Conn", "PostgresBase"]

_T = TypeVar("_T")
Conn = psycopg.AsyncConnection[Any]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
Params = Sequence[Any] | dict[str, Any]


def _check_conninfo(url: str) -> None:
    """Refuse what libpq would refuse only on connecting: unknown keys, bad ports.

    Raises:
        ConfigError: the message names the URL and the part that is wrong.
    """
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        msg = f"postgres store url {url!r} is malformed: {exc}".strip()
        raise ConfigError(msg) from exc
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            msg = f"postgres store url {url!r}: port {port!r} is not a number in 1-65535"
            raise ConfigError(msg)


class PostgresBase:
    """Options, the connection pool, migrations and one retrying way to run statements.

    Args:
        url: ``postgresql://user@host:port/dbname``; ``?schema=name`` sets ``schema``.
        schema: the schema holding callstate's tables (created and migrated on open).
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
        self._conninfo, url_schema = pop_url_option(
            url, ("postgresql", "postgres"), "schema", port=False
        )
        _check_conninfo(self._conninfo)
        self.schema = schema or url_schema or "callstate"
        if not isinstance(self.schema, str) or not _IDENT.fullmatch(self.schema):
            msg = f"postgres schema must be a plain identifier (letters, digits, _), got {self.schema!r}"
            raise ConfigError(msg)
        check_server_options(
            pool_size=pool_size, retry_for=retry_for, connect_timeout=connect_timeout
        )
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = float(connect_timeout)
        #: ``application_name`` of this store's connections (find them in pg_stat_activity).
        self.application_name = f"callstate-{uuid.uuid4().hex[:12]}"
        #: Batches found already (partly) stored by an attempt whose reply was lost.
        self.replayed = 0
        # connection lost, server restarting, backend terminated, deadlock: try again
        transient = (psycopg.OperationalError, psycopg.InterfaceError)
        self._retrying = Retrying(
            f"postgres store {url!r}", float(retry_for), transient, psycopg.Error
        )
        self._in_doubt = InDoubt()
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._s = f'"{self.schema}"'
        self._sql = {name: sql.replace("{s}", self._s) for name, sql in STATEMENTS.items()}

    @property
    def retry_for(self) -> float:
        """Seconds an operation is retried before it raises ``StorageError``."""
        return self._retrying.retry_for

    @property
    def retries(self) -> int:
        """Attempts repeated after a connection failure, since the store was made."""
        return self._retrying.retries

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=self.retry_for,
            configure=self._configure,
            kwargs={
                "autocommit": True,
                "application_name": self.application_name,
                "connect_timeout": max(1, round(self.connect_timeout)),
            },
        )
        try:
            await self._pool.open(wait=False)
            await self._run("open", self._migrate)
        except BaseException:
            await self.close()
            raise

    @staticmethod
    async def _configure(conn: Conn) -> None:
        register(conn.adapters)  # the group commit's pre-packed arrays

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _migrate(self, conn: Conn, _: bool) -> None:
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
                    await conn.execute(script.replace("{schema}", s))
                    await conn.execute(
                        f"INSERT INTO {s}.callstate_migrations VALUES (%s, %s)",
                        [version, time.time()],
                    )

    async def schema_version(self) -> int:
        rows = await self._fetch(
            "schema_version", f"SELECT max(version) FROM {self._s}.callstate_migrations"
        )
        return int(rows[0][0] or 0)

    # -- running -----------------------------------------------------------------------

    async def _run(self, what: str, op: Callable[[Conn, bool], Awaitable[_T]]) -> _T:
        """``op(conn, retrying)`` on a pooled connection, retried for up to ``retry_for`` s."""
        pool = self._pool
        if pool is None:
            msg = f"store {self.url!r} is not open; call `await store.open()` first"
            raise StorageError(msg)

        async def attempt(retrying: bool) -> _T:
            async with pool.connection(timeout=self.retry_for) as conn:
                return await op(conn, retrying)

        return await self._retrying.run(what, attempt)

    async def _fetch(self, what: str, sql: str, params: Params = ()) -> list[Any]:
        """Rows of one statement (none for a statement that returns none)."""

        async def op(conn: Conn, _: bool) -> list[Any]:
            cur = await conn.execute(sql, params, binary=True)  # bytea as is, not hex
            return await cur.fetchall() if cur.description else []

        return await self._run(what, op)
