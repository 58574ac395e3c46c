"""Where each system stores its data: one SQLite folder, PostgreSQL schemas, a Redis server.

Every system gets its own place (a file, a schema, a key prefix), so sizes can be read per
system and everything is removed afterwards. Redis runs as a private ``redis-server`` on
a free port with ``appendonly yes`` and ``appendfsync always`` when the binary is on PATH;
otherwise the shared server is switched to those settings for the run and restored after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_URL = os.environ.get(
    "CALLSTATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CALLSTATE_BENCH_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = 13  # the shared server's database this bench uses (and empties) when it must


def note(text: str) -> None:
    """A human note, on stderr (stdout holds only ``name value`` lines)."""
    print(text, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Engines:
    """The servers and folders of one run; ``place(kind)`` names a fresh store place."""

    tmp: Path
    redis_base: str = ""  # redis://host:port/db
    redis_how: str = ""
    pg_schemas: list[str] = field(default_factory=list)
    redis_prefixes: list[str] = field(default_factory=list)

    def sqlite_path(self, name: str) -> Path:
        """A new SQLite file path (nothing there yet)."""
        return self.tmp / f"{name}-{uuid.uuid4().hex[:8]}.db"

    def pg_schema(self, name: str) -> str:
        """A new schema name, dropped at the end of the run."""
        schema = f"peers_{name}_{uuid.uuid4().hex[:8]}"
        self.pg_schemas.append(schema)
        return schema

    def redis_prefix(self, name: str) -> str:
        """A new key prefix, deleted at the end of the run."""
        prefix = f"peers_{name}_{uuid.uuid4().hex[:8]}"
        self.redis_prefixes.append(prefix)
        return prefix


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _private_redis(tmp: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    assert binary is not None
    port = _free_port()
    data = tmp / "redis"
    data.mkdir()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--dir", str(data), "--appendonly", "yes", "--appendfsync", "always"]
    args += ["--daemonize", "no", "--logfile", ""]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                msg = f"redis-server on port {port} did not start"
                raise RuntimeError(msg)
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def _shared_redis_fsync_always() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(f"{REDIS_URL}/0")
    before = client.config_get("appendonly") | client.config_get("appendfsync")
    client.config_set("appendonly", "yes")
    client.config_set("appendfsync", "always")
    try:
        yield f"{REDIS_URL}/{REDIS_DB}"
    finally:
        client.config_set("appendfsync", before["appendfsync"])
        client.config_set("appendonly", before["appendonly"])
        client.close()


@contextlib.contextmanager
def engines(selected: set[str]) -> Iterator[Engines]:
    """Set up what ``selected`` engines need, and remove it all afterwards."""
    with tempfile.TemporaryDirectory(prefix="callstate-peers-") as tmp:
        e = Engines(Path(tmp))
        with contextlib.ExitStack() as stack:
            if "redis" in selected:
                if shutil.which("redis-server"):
                    e.redis_base = stack.enter_context(_private_redis(e.tmp))
                    e.redis_how = "private redis-server, appendonly yes, appendfsync always"
                else:
                    e.redis_base = stack.enter_context(_shared_redis_fsync_always())
                    e.redis_how = "shared server set to appendfsync always for the run"
            try:
                yield e
            finally:
                _drop_pg(e)
                _drop_redis(e)


def _drop_pg(e: Engines) -> None:
    if not e.pg_schemas:
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for schema in e.pg_schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _drop_redis(e: Engines) -> None:
    if not e.redis_prefixes or not e.redis_base:
        return
    import redis

    client = redis.Redis.from_url(e.redis_base)
    try:
        for prefix in e.redis_prefixes:
            batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for i in range(0, len(batch), 500):
                client.delete(*batch[i : i + 500])
    finally:
        client.close()


def pg_search_path_url(schema: str) -> str:
    """The PostgreSQL URL whose connections use ``schema`` (for savers that take no schema)."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def pg_create_schema(schema: str) -> None:
    """Create ``schema`` (for systems that do not create their own)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def pg_schema_bytes(schema: str) -> int:
    """Bytes on disk of every table in ``schema`` (heap, TOAST and indexes)."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
        return int(row[0]) if row else 0


def redis_aof_bytes(url: str) -> int:
    """The server's current AOF size (grows by what each command appended)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("persistence").get("aof_current_size", 0))
    finally:
        client.close()


def sqlite_bytes(path: Path) -> tuple[int, int]:
    """Sizes of the database file and of its WAL file."""

    def size(p: Path) -> int:
        return p.stat().st_size if p.exists() else 0

    return size(path), size(path.with_name(path.name + "-wal"))


def sqlite_checkpointed_bytes(path: Path) -> int:
    """The database's size once its WAL is checkpointed into it: the data kept on disk."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size
