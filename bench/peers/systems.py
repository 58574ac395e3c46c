"""The systems compared: callstate, the raw floor of each engine, and LangGraph's savers.

Each system replays a call turn by turn through the same small interface; every
``turn`` and ``tool`` call returns only once what it wrote is durable. callstate is used
through its public API only (``callstate.Keeper``, ``callstate.ToolRegistry``, store URLs).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Protocol

from engines import (
    Engines,
    pg_create_schema,
    pg_schema_bytes,
    pg_search_path_url,
    sqlite_bytes,
)
from workload import Turn

import callstate


class CallSystem(Protocol):
    """One system replaying calls on one engine."""

    name: str

    async def open(self) -> None: ...
    async def begin_call(self) -> None: ...
    async def turn(self, t: Turn) -> None: ...
    async def tool(self, t: Turn) -> None: ...
    async def end_call(self) -> None: ...
    async def close(self) -> None: ...
    def sizes(self) -> dict[str, int]: ...


# -- callstate ----------------------------------------------------------------------------


def booking_tools(results: dict[str, Any]) -> callstate.ToolRegistry:
    """A registry with one write tool answering from ``results`` (keyed by call id)."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(
        booking_id: str, time: str, party_size: int, *, ctx: callstate.ToolContext
    ) -> dict[str, Any]:
        return results.pop(ctx.call_id)  # type: ignore[no-any-return]

    return tools


def callstate_url(engine: str, e: Engines, name: str = "cs", **sqlite_opts: str) -> str:
    """A fresh store URL of ``engine`` for callstate."""
    if engine == "sqlite":
        return f"sqlite:///{e.sqlite_path(name)}"
    if engine == "postgres":
        from engines import POSTGRES_URL

        return f"{POSTGRES_URL}?schema={e.pg_schema(name)}"
    return f"{e.redis_base}?prefix={e.redis_prefix(name)}"


class Callstate:
    """callstate: ``user_said`` + ``agent_started``/``agent_finished``, then ``flush()``."""

    def __init__(self, engine: str, e: Engines, *, synchronous: str = "FULL") -> None:
        self.name = "callstate" if synchronous == "FULL" else "callstate_normal"
        self.engine = engine
        self.url = callstate_url(engine, e)
        self.path = Path(self.url.removeprefix("sqlite:///")) if engine == "sqlite" else None
        self.synchronous = synchronous
        self.results: dict[str, Any] = {}
        self.keeper: callstate.Keeper | None = None
        self.s: callstate.Session | None = None

    async def open(self) -> None:
        opts: dict[str, object] = {}
        if self.engine == "sqlite":
            opts["synchronous"] = self.synchronous
        store = callstate.open_store(self.url, **opts)
        # a secret, as in production: it signs tokens and encrypts the caller id at rest
        self.keeper = callstate.Keeper(
            store, secret=b"bench-peers-secret-32-bytes-long", tools=booking_tools(self.results)
        )
        await self.keeper.__aenter__()

    async def begin_call(self) -> None:
        assert self.keeper is not None
        self.s = await self.keeper.start(
            agent="bench", caller=f"+1555{uuid.uuid4().int % 10**7:07d}"
        )

    async def turn(self, t: Turn) -> None:
        s = self.s
        assert s is not None
        s.user_said(t.user)
        u = s.agent_started(t.reply)
        s.agent_finished(u)
        await s.flush()

    async def tool(self, t: Turn) -> None:
        assert self.s is not None
        assert t.tool_args is not None
        call_id = f"call_{t.index}"
        self.results[call_id] = t.tool_result
        out = await self.s.run_tool("move_booking", t.tool_args, call_id=call_id)
        if out.status != "succeeded":
            msg = f"tool call {call_id} ended {out.status}"
            raise RuntimeError(msg)

    async def end_call(self) -> None:
        assert self.s is not None
        await self.s.close()
        self.s = None

    async def close(self) -> None:
        if self.keeper is not None:
            await self.keeper.__aexit__(None, None, None)
            self.keeper = None

    def sizes(self) -> dict[str, int]:
        return _sizes(self.engine, self.url)


def _sizes(engine: str, url: str) -> dict[str, int]:
    if engine == "sqlite":
        db, wal = sqlite_bytes(Path(url.removeprefix("sqlite:///")))
        return {"db_bytes": db, "wal_bytes": wal, "bytes": db + wal}
    if engine == "postgres":
        return {"bytes": pg_schema_bytes(url.rpartition("schema=")[2])}
    return {}


# -- the raw floor ------------------------------------------------------------------------


def _tool_rows(t: Turn) -> tuple[str, str]:
    intent = {"type": "tool_started", "call_id": f"call_{t.index}", "args": t.tool_args}
    result = {"type": "tool_succeeded", "call_id": f"call_{t.index}", "result": t.tool_result}
    return json.dumps(intent), json.dumps(result)


class SqliteFloor:
    """One fsynced INSERT of the turn's events as JSON (WAL, ``synchronous`` as given)."""

    def __init__(self, e: Engines, *, synchronous: str = "FULL") -> None:
        self.name = "floor" if synchronous == "FULL" else "floor_normal"
        self.path = e.sqlite_path(self.name)
        self.synchronous = synchronous
        self.conn: sqlite3.Connection | None = None
        self.sid = ""
        self.seq = 0

    async def open(self) -> None:
        self.conn = c = sqlite3.connect(self.path, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute(f"PRAGMA synchronous={self.synchronous}")
        c.execute(
            "CREATE TABLE IF NOT EXISTS events (session_id TEXT, seq INTEGER, data TEXT, "
            "PRIMARY KEY (session_id, seq))"
        )

    async def begin_call(self) -> None:
        self.sid, self.seq = uuid.uuid4().hex, 0

    def _insert(self, data: str) -> None:
        assert self.conn is not None
        self.seq += 1
        self.conn.execute("INSERT INTO events VALUES (?, ?, ?)", (self.sid, self.seq, data))

    async def turn(self, t: Turn) -> None:
        self._insert(t.turn_json())

    async def tool(self, t: Turn) -> None:
        intent, result = _tool_rows(t)
        self._insert(intent)
        self._insert(result)

    async def end_call(self) -> None:
        pass

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def sizes(self) -> dict[str, int]:
        db, wal = sqlite_bytes(self.path)
        return {"db_bytes": db, "wal_bytes": wal, "bytes": db + wal}

    def read(self, sid: str) -> list[Any]:
        """Every row of session ``sid``, decoded."""
        assert self.conn is not None
        rows = self.conn.execute(
            "SELECT data FROM events WHERE session_id = ? ORDER BY seq", (sid,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]


class PostgresFloor:
    """One INSERT of the turn's events as JSON, committed (autocommit, server defaults)."""

    name = "floor"

    def __init__(self, e: Engines) -> None:
        self.schema = e.pg_schema("floor")
        self.conn: Any = None
        self.sid = ""
        self.seq = 0

    async def open(self) -> None:
        import psycopg

        pg_create_schema(self.schema)
        self.conn = await psycopg.AsyncConnection.connect(
            pg_search_path_url(self.schema), autocommit=True
        )
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS events (session_id TEXT, seq INTEGER, data TEXT, "
            "PRIMARY KEY (session_id, seq))"
        )

    async def begin_call(self) -> None:
        self.sid, self.seq = uuid.uuid4().hex, 0

    async def _insert(self, data: str) -> None:
        self.seq += 1
        await self.conn.execute(
            "INSERT INTO events VALUES (%s, %s, %s)", (self.sid, self.seq, data)
        )

    async def turn(self, t: Turn) -> None:
        await self._insert(t.turn_json())

    async def tool(self, t: Turn) -> None:
        intent, result = _tool_rows(t)
        await self._insert(intent)
        await self._insert(result)

    async def end_call(self) -> None:
        pass

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    def sizes(self) -> dict[str, int]:
        return {"bytes": pg_schema_bytes(self.schema)}

    async def read(self, sid: str) -> list[Any]:
        """Every row of session ``sid``, decoded."""
        cur = await self.conn.execute(
            "SELECT data FROM events WHERE session_id = %s ORDER BY seq", (sid,)
        )
        return [json.loads(r[0]) for r in await cur.fetchall()]


class RedisFloor:
    """One RPUSH of the turn's events as JSON (the server fsyncs its AOF on every write)."""

    name = "floor"

    def __init__(self, e: Engines) -> None:
        self.url = e.redis_base
        self.prefix = e.redis_prefix("floor")
        self.client: Any = None
        self.key = ""

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(self.url)

    async def begin_call(self) -> None:
        self.key = f"{self.prefix}:{uuid.uuid4().hex}"

    async def turn(self, t: Turn) -> None:
        await self.client.rpush(self.key, t.turn_json())

    async def tool(self, t: Turn) -> None:
        intent, result = _tool_rows(t)
        await self.client.rpush(self.key, intent)
        await self.client.rpush(self.key, result)

    async def end_call(self) -> None:
        pass

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def sizes(self) -> dict[str, int]:
        return {}

    async def read(self, key: str) -> list[Any]:
        """Every entry of list ``key``, decoded."""
        return [json.loads(x) for x in await self.client.lrange(key, 0, -1)]


def floor(engine: str, e: Engines, *, synchronous: str = "FULL") -> Any:
    """The raw floor of ``engine``."""
    if engine == "sqlite":
        return SqliteFloor(e, synchronous=synchronous)
    if engine == "postgres":
        return PostgresFloor(e)
    return RedisFloor(e)


async def in_thread(fn: Any, *args: Any) -> Any:
    """Run a blocking call off the event loop (as an async app would)."""
    return await asyncio.to_thread(fn, *args)
