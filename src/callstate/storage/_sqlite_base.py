"""The SQLite store's plumbing: one connection on one worker thread, opening, migrating."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from ..errors import ConfigError, StorageError
from ._options import check_seconds, check_text
from ._sqlite_schema import migrate
from ._worker import Worker

__all__ = ["SQLiteBase"]

_T = TypeVar("_T")


def _path_from_url(url: str) -> str:
    scheme, _, rest = check_text(url, "store url").partition("://")
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


class SQLiteBase:
    """Connection handling shared by the parts of ``SQLiteStore``."""

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
        check_seconds(busy_timeout=busy_timeout)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._worker: Worker | None = None

    # -- plumbing ----------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        worker, call = self._job(fn)
        return await worker.submit(call)

    def _run_then(
        self, fn: Callable[[sqlite3.Connection], Any], then: Callable[[bool, Any], None]
    ) -> None:
        """Like :meth:`_run`, answering ``then(ok, value)`` on the loop instead."""
        worker, call = self._job(fn)
        worker.submit_then(call, then)

    def _job(self, fn: Callable[[sqlite3.Connection], _T]) -> tuple[Worker, Callable[[], _T]]:
        """The worker, and ``fn`` on the connection with sqlite errors mapped."""
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

        return self._worker, call

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
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            msg = f"sqlite store {self.path!r} cannot be opened: {exc}"
            raise StorageError(msg) from exc
        except BaseException:
            conn.close()
            raise
        return conn

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
