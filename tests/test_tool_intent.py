"""Intent-level deduplication: the same write asked for again in one user turn runs once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.journal.events import ToolDeduplicated
from callstate.testing import FakeClock

SECRET = b"intent-dedupe-test-secret-000001"
ORDER = {"item": "pizza", "qty": 2}


class Shop:
    """A registry with a non-idempotent write, an idempotent one and a read, counting runs."""

    def __init__(self, **registry: Any) -> None:
        self.registry = callstate.ToolRegistry(**registry)
        self.runs: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.fail_next = False
        reg = self.registry

        @reg.tool(effect="write")
        async def place_order(item: str, qty: int) -> dict[str, Any]:
            self.runs.append("place_order")
            self.started.set()
            await self.gate.wait()
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("kitchen closed")
            return {"order": len(self.runs), "item": item, "qty": qty}

        @reg.tool(effect="write", idempotent=True)
        async def set_note(text: str) -> str:
            self.runs.append("set_note")
            return text

        @reg.tool
        async def menu(section: str) -> list[str]:
            self.runs.append("menu")
            return [section]


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[tuple[Shop, callstate.Keeper]]:
    """A shop's tools in a keeper on a real SQLite file."""
    tools = Shop()
    keeper = callstate.Keeper(
        f"sqlite:///{tmp_path}/cs.db", tools=tools.registry, secret=SECRET, clock=FakeClock()
    )
    async with keeper:
        yield tools, keeper


async def test_the_same_write_in_one_turn_runs_once(shop: tuple[Shop, callstate.Keeper]) -> None:
    """A second call id with the same write and arguments gets the first's outcome, journaled."""
    tools, keeper = shop
    s = await keeper.start()
    s.user_said("two pizzas please")
    first = await s.run_tool("place_order", ORDER, call_id="c1")
    again = await s.run_tool("place_order", ORDER, call_id="c2")
    assert ["place_order"] == tools.runs
    assert ("c2", "c1", True, first.result) == (
        again.call_id,
        again.duplicate_of,
        again.deduplicated,
        again.result,
    )
    tool_msgs = {
        m["tool_call_id"]: json.loads(m["content"]) for m in s.context() if m["role"] == "tool"
    }
    assert "c1" == tool_msgs["c2"]["duplicate_of"]
    stored = await keeper.load(s.id)
    assert ("succeeded", "c1", first.result) == (
        stored.calls["c2"].status,
        stored.calls["c2"].duplicate_of,
        stored.calls["c2"].result,
    )
    assert ["c2"] == [e.call_id for e in stored.recovery_log if isinstance(e, ToolDeduplicated)]


async def test_a_repeat_while_the_first_runs_waits_for_it(
    shop: tuple[Shop, callstate.Keeper],
) -> None:
    """Two calls of the same write at once: one runs, both get its outcome."""
    tools, keeper = shop
    tools.gate.clear()
    s = await keeper.start()
    s.user_said("two pizzas please")
    a = asyncio.create_task(s.run_tool("place_order", ORDER, call_id="c1"))
    b = asyncio.create_task(s.run_tool("place_order", ORDER, call_id="c2"))
    await tools.started.wait()
    assert "c2" not in s.state.calls  # nothing recorded for the repeat until the first ends
    tools.gate.set()
    first, second = await asyncio.gather(a, b)
    assert ["place_order"] == tools.runs
    assert (first.result, "c1") == (second.result, second.duplicate_of)


async def test_a_new_turn_or_a_failed_first_call_runs_again(
    shop: tuple[Shop, callstate.Keeper],
) -> None:
    """The window is one user turn; a first call that failed did not happen, so it reruns."""
    tools, keeper = shop
    s = await keeper.start()
    s.user_said("two pizzas")
    tools.fail_next = True
    failed = await s.run_tool("place_order", ORDER, call_id="c1")
    retried = await s.run_tool("place_order", ORDER, call_id="c2")
    s.user_said("and two more, the same")
    later = await s.run_tool("place_order", ORDER, call_id="c3")
    assert ("failed", "succeeded", "succeeded") == (failed.status, retried.status, later.status)
    assert [None, None] == [retried.duplicate_of, later.duplicate_of]
    assert 3 == len(tools.runs)


async def test_reads_and_idempotent_writes_run_again_unless_the_tool_asks(
    tmp_path: Path,
) -> None:
    """By default only non-idempotent writes dedupe; per-tool and registry switches win."""
    tools = Shop(dedupe_intent=False)

    @tools.registry.tool(effect="read", dedupe_intent=True)
    async def quote(item: str) -> int:
        tools.runs.append("quote")
        return 12

    keeper = callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", tools=tools.registry)
    async with keeper:
        s = await keeper.start()
        for call_id in ("c1", "c2"):
            await s.run_tool("place_order", ORDER, call_id=f"{call_id}-order")
            await s.run_tool("set_note", {"text": "x"}, call_id=f"{call_id}-note")
            await s.run_tool("menu", {"section": "mains"}, call_id=f"{call_id}-menu")
            await s.run_tool("quote", {"item": "pizza"}, call_id=f"{call_id}-quote")
    counts = {n: tools.runs.count(n) for n in ("place_order", "set_note", "menu", "quote")}
    assert {"place_order": 2, "set_note": 2, "menu": 2, "quote": 1} == counts
    with pytest.raises(callstate.ConfigError, match="dedupe_intent"):
        callstate.ToolRegistry(dedupe_intent="yes")  # type: ignore[arg-type]


async def test_a_repeat_is_carried_through_handoff_and_resume(
    shop: tuple[Shop, callstate.Keeper],
) -> None:
    """The repeat and its ``duplicate_of`` reach the next agent and a resumed session."""
    tools, keeper = shop
    s = await keeper.start(agent="orders")
    s.user_said("two pizzas")
    await s.run_tool("place_order", ORDER, call_id="c1")
    await s.run_tool("place_order", ORDER, call_id="c2")
    pkg = await s.handoff(to="billing")
    assert "c1" == next(c for c in pkg.ledger if c["call_id"] == "c2")["duplicate_of"]
    s2 = await keeper.accept(pkg.to_bytes())
    assert "c1" == s2.state.calls["c2"].duplicate_of
    again = await s2.run_tool("place_order", ORDER, call_id="c3")  # same turn, other agent
    assert ("c1", 1) == (again.duplicate_of, len(tools.runs))
    await s2.close()
    s3 = await keeper.resume(s.id)
    assert {"c2": "c1", "c3": "c1"} == {
        c.call_id: c.duplicate_of for c in s3.state.calls.values() if c.duplicate_of
    }


async def test_a_repeat_emits_a_recovery_event(shop: tuple[Shop, callstate.Keeper]) -> None:
    """Observers see ``tool.deduplicated`` with the call it repeated."""
    _, keeper = shop
    seen: list[callstate.RecoveryEvent] = []
    stream = keeper.events()
    s = await keeper.start()
    await s.run_tool("place_order", ORDER, call_id="c1")
    await s.run_tool("place_order", ORDER, call_id="c2")
    async with asyncio.timeout(5):
        async for event in stream:
            seen.append(event)
            if event.kind == "tool.deduplicated":
                break
    await stream.aclose()
    assert ("c2", "c1") == (seen[-1].call_id, seen[-1].data["duplicate_of"])
