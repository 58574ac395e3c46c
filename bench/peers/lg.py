"""LangGraph's checkpointers replaying the same call (extra ``peers``).

Two ways a LangGraph app persists a voice call, per turn:

* ``langgraph``: the saver alone, ``put`` (SQLite) / ``aput`` (PostgreSQL) of a
  checkpoint whose ``messages`` channel holds the conversation so far, the way a graph
  step stores it; a tool call is ``put_writes`` of the tool message, then ``put``.
* ``langgraph_graph``: a compiled ``StateGraph(MessagesState)`` with one node that
  answers, run with ``invoke(..., durability="sync")`` for each caller turn.

LangGraph has no Redis saver in these packages (``langgraph-checkpoint-redis`` needs
Redis Stack modules), so Redis has no LangGraph column.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from engines import Engines, pg_create_schema, pg_schema_bytes, pg_search_path_url, sqlite_bytes
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from workload import Turn

ENGINES = ("sqlite", "postgres")


def version() -> str:
    """The installed langgraph version."""
    from importlib.metadata import version as v

    return v("langgraph")


def _sqlite_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the same durability as the other systems
    return conn


class _Base:
    """The engine plumbing both LangGraph systems share."""

    name = "langgraph"

    def __init__(self, engine: str, e: Engines) -> None:
        self.engine = engine
        self.path = e.sqlite_path(self.name) if engine == "sqlite" else None
        self.schema = e.pg_schema(self.name) if engine == "postgres" else ""
        self.saver: Any = None
        self._pg_cm: Any = None
        self.thread = ""

    async def open(self) -> None:
        if self.engine == "sqlite":
            assert self.path is not None
            self.saver = SqliteSaver(_sqlite_conn(self.path))
            self.saver.setup()
        else:
            pg_create_schema(self.schema)
            self._pg_cm = AsyncPostgresSaver.from_conn_string(pg_search_path_url(self.schema))
            self.saver = await self._pg_cm.__aenter__()
            await self.saver.setup()

    async def close(self) -> None:
        if self.engine == "sqlite":
            if self.saver is not None:
                self.saver.conn.close()
        elif self._pg_cm is not None:
            await self._pg_cm.__aexit__(None, None, None)
        self.saver = None

    def sizes(self) -> dict[str, int]:
        if self.engine == "sqlite":
            assert self.path is not None
            db, wal = sqlite_bytes(self.path)
            return {"db_bytes": db, "wal_bytes": wal, "bytes": db + wal}
        return {"bytes": pg_schema_bytes(self.schema)}

    async def end_call(self) -> None:
        pass


class Saver(_Base):
    """The checkpointer alone: one checkpoint per turn holding every message so far."""

    name = "langgraph"

    def __init__(self, engine: str, e: Engines) -> None:
        super().__init__(engine, e)
        self.messages: list[BaseMessage] = []
        self.config: dict[str, Any] = {}
        self.version: Any = None
        self.step = 0

    async def begin_call(self) -> None:
        self.thread = uuid.uuid4().hex
        self.messages = []
        self.config = {"configurable": {"thread_id": self.thread, "checkpoint_ns": ""}}
        self.version = None
        self.step = 0

    async def _put(self) -> None:
        self.step += 1
        self.version = self.saver.get_next_version(self.version, None)
        cp = empty_checkpoint()
        cp["channel_values"] = {"messages": list(self.messages)}
        cp["channel_versions"] = {"messages": self.version}
        meta: Any = {"source": "loop", "step": self.step, "parents": {}}
        new = {"messages": self.version}
        if self.engine == "sqlite":
            self.config = self.saver.put(self.config, cp, meta, new)
        else:
            self.config = await self.saver.aput(self.config, cp, meta, new)

    async def turn(self, t: Turn) -> None:
        self.messages += [HumanMessage(t.user), AIMessage(t.reply)]
        await self._put()

    async def tool(self, t: Turn) -> None:
        call_id = f"call_{t.index}"
        ask = AIMessage(
            "", tool_calls=[{"name": "move_booking", "args": t.tool_args, "id": call_id}]
        )
        answer = ToolMessage(json.dumps(t.tool_result), tool_call_id=call_id)
        writes = [("messages", [answer])]
        if self.engine == "sqlite":
            self.saver.put_writes(self.config, writes, call_id)
        else:
            await self.saver.aput_writes(self.config, writes, call_id)
        self.messages += [ask, answer]
        await self._put()

    async def build(self, call: list[Turn]) -> dict[str, Any]:
        """Store ``call`` as one thread whose latest checkpoint holds all of it."""
        await self.begin_call()
        for t in call:
            self.messages += [HumanMessage(t.user), AIMessage(t.reply)]
            if t.tool_result is not None:
                self.messages += [
                    AIMessage(
                        "",
                        tool_calls=[
                            {"name": "move_booking", "args": t.tool_args, "id": f"c{t.index}"}
                        ],
                    ),
                    ToolMessage(json.dumps(t.tool_result), tool_call_id=f"c{t.index}"),
                ]
        await self._put()
        return {"configurable": {"thread_id": self.thread, "checkpoint_ns": ""}}

    async def get(self, config: dict[str, Any]) -> int:
        """``get_tuple`` of the thread's latest checkpoint; returns its message count."""
        if self.engine == "sqlite":
            tup = self.saver.get_tuple(config)
        else:
            tup = await self.saver.aget_tuple(config)
        return len(tup.checkpoint["channel_values"]["messages"])


class Graph(_Base):
    """A compiled one-node ``StateGraph(MessagesState)``, ``invoke`` per caller turn."""

    name = "langgraph_graph"

    def __init__(self, engine: str, e: Engines) -> None:
        super().__init__(engine, e)
        self.reply = ""
        self.graph: Any = None

    async def open(self) -> None:
        await super().open()

        def agent(state: MessagesState) -> dict[str, Any]:
            return {"messages": [AIMessage(self.reply)]}

        builder = StateGraph(MessagesState)
        builder.add_node("agent", agent)
        builder.add_edge(START, "agent")
        self.graph = builder.compile(checkpointer=self.saver)

    async def begin_call(self) -> None:
        self.thread = uuid.uuid4().hex

    async def turn(self, t: Turn) -> None:
        self.reply = t.reply
        config: Any = {"configurable": {"thread_id": self.thread}}
        data: Any = {"messages": [HumanMessage(t.user)]}
        if self.engine == "sqlite":
            self.graph.invoke(data, config, durability="sync")
        else:
            await self.graph.ainvoke(data, config, durability="sync")

    async def tool(self, t: Turn) -> None:
        """Not measured for the graph (its tool turn is the saver's put_writes + put)."""
