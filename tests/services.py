"""Reach the Redis and PostgreSQL servers tests need, or skip (fail under CI) saying why.

``CALLSTATE_REQUIRE_SERVICES=1`` turns every "server unreachable" skip into a failure.
``CALLSTATE_TEST_REDIS`` / ``CALLSTATE_TEST_POSTGRES`` point the tests at other servers.
Every test run works under its own key prefix or schema and removes it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("CALLSTATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("CALLSTATE_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")

_HOW = {
    "redis": (
        f"Redis at {REDIS_URL} is unreachable: install and start it "
        "(`apt-get install redis-server && redis-server --daemonize yes`) "
        "or point CALLSTATE_TEST_REDIS at one"
    ),
    "postgres": (
        f"PostgreSQL at {POSTGRES_URL} is unreachable: install and start it "
        "(`apt-get install postgresql`, a database named `test` with trust auth) "
        "or point CALLSTATE_TEST_POSTGRES at one"
    ),
    "redis-server": "the `redis-server` binary is not on PATH: `apt-get install redis-server`",
    "chromium": "Debian's chromium is not at /usr/bin/chromium: `apt-get install chromium`",
}


def required() -> bool:
    """True when tests must fail, not skip, if a server is missing."""
    return os.environ.get("CALLSTATE_REQUIRE_SERVICES") == "1"


def missing(what: str, detail: str = "") -> None:
    """Skip the test (or fail it under CALLSTATE_REQUIRE_SERVICES=1) because ``what`` is missing."""
    msg = _HOW[what] + (f" ({detail})" if detail else "")
    if required():
        pytest.fail(msg)
    pytest.skip(msg)


def _reachable(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return ""
    except OSError as exc:
        return str(exc)


def redis_url() -> str:
    """The Redis URL to test against; skips or fails when nothing listens there."""
    error = _reachable(REDIS_URL, 6379)
    if error:
        missing("redis", error)
    return REDIS_URL


def postgres_url() -> str:
    """The PostgreSQL URL to test against; skips or fails when nothing listens there."""
    error = _reachable(POSTGRES_URL, 5432)
    if error:
        missing("postgres", error)
    return POSTGRES_URL


def unique(kind: str) -> str:
    """A fresh prefix/schema name for one test run: ``cs_test_<kind>_<random>``."""
    return f"cs_test_{kind}_{uuid.uuid4().hex[:12]}"


async def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:``."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        batch = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


async def drop_pg_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.asynccontextmanager
async def redis_admin(url: str) -> AsyncIterator[object]:
    """A raw redis-py client on ``url`` (for CLIENT KILL and checks), closed afterwards."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def free_port(*, also_plus: int | None = None) -> int:
    """A TCP port nothing listens on right now (nor on ``port + also_plus``, if given)."""
    if also_plus is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for port in random.sample(range(20000, 65535 - also_plus), 200):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + also_plus))
                return port
        except OSError:
            continue
    msg = f"no free port pair (port, port + {also_plus})"
    raise RuntimeError(msg)


class PrivateRedis:
    """A ``redis-server`` of this test alone, on a free port, with its data in ``dir``.

    Fault tests stop and restart it; the shared server other tests use is never touched.
    """

    def __init__(
        self,
        dir: Path,
        *,
        appendonly: bool = False,
        appendfsync: str = "always",
        cluster: bool = False,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server")
        self.binary = str(binary)
        self.dir = dir
        self.port = free_port(also_plus=10000 if cluster else None)  # cluster bus: port + 10000
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.dir), "--appendonly", "yes" if self.appendonly else "no"]
        args += ["--appendfsync", self.appendfsync, "--daemonize", "no", "--logfile", ""]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                msg = f"redis-server on port {self.port} did not start"
                raise RuntimeError(msg)
            time.sleep(0.02)
        if self.cluster:
            self._serve_all_slots()

    def _cli(self, *args: str) -> str:
        cli = shutil.which("redis-cli")
        if cli is None:
            missing("redis-server", "redis-cli is missing")
        cmd = [str(cli), "-p", str(self.port), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def _serve_all_slots(self) -> None:
        """Make this node a one-node cluster owning every slot, and wait until it is up."""
        if "cluster_state:ok" not in self._cli("CLUSTER", "INFO"):
            self._cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        deadline = time.monotonic() + 10
        while "cluster_state:ok" not in self._cli("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                msg = f"redis cluster node on port {self.port} did not come up"
                raise RuntimeError(msg)
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no final fsync (a crash)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@contextlib.contextmanager
def private_redis(**options: object) -> Iterator[PrivateRedis]:
    """Run a :class:`PrivateRedis` for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="cs-redis-") as tmp:
        server = PrivateRedis(Path(tmp), **options)  # type: ignore[arg-type]
        server.start()
        try:
            yield server
        finally:
            server.kill()


class TcpProxy:
    """A loopback TCP forwarder the test can cut (connections refused) and restore.

    It sits between a store and a real server to stage a network outage of any length
    without stopping the shared server.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._lose_reply = False
        #: Replies swallowed so far by :meth:`lose_next_reply`.
        self.lost = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._links):
            w.transport.abort()
        self._links.clear()

    def lose_next_reply(self) -> None:
        """Let the next request reach the server, then drop its reply and the connection.

        The client sees a broken connection after the server has done the work: the
        one fault that makes a retry meet its own earlier write.
        """
        self._lose_reply = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if replies and self._lose_reply:
                        self._lose_reply = False
                        self.lost += 1
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                for w in (writer, up_writer):
                    w.transport.abort()
                    self._links.discard(w)

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))
