"""The tool registry and the guard: write-ahead intent, dedup, failures, end of session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.testing import FakeClock
from callstate.tools.registry import idempotency_key


@pytest.fixture
async def keeper(tmp_path: Path) -> AsyncIterator[callstate.Keeper]:
    """A keeper on a real SQLite file with an empty registry the test fills."""
    k = callstate.Keeper(
        f"sqlite:///{tmp_path}/cs.db", tools=callstate.ToolRegistry(), clock=FakeClock()
    )
    async with k:
        yield k


def registry(k: callstate.Keeper) -> callstate.ToolRegistry:
    assert k.tools is not None
    return k.tools


# -- the registry --------------------------------------------------------------------------


def test_registry_takes_bare_and_configured_async_tools() -> None:
    """@tools.tool works bare and with policy; the policy is kept as given."""
    tools = callstate.ToolRegistry()

    @tools.tool
    async def lookup(q: str) -> str:
        return q

    @tools.tool(effect="write", idempotent=True, compensate="undo", timeout_s=2)
    async def book(slot: str, *, ctx: callstate.ToolContext) -> str:
        return slot

    assert {"lookup", "book"} == tools.names()
    spec = tools.get("book")
    assert ("write", True, "undo", 2.0, True) == (
        spec.effect,
        spec.idempotent,
        spec.compensate,
        spec.timeout_s,
        spec.wants_ctx,
    )
    assert ("read", False, "complete") == (
        tools.get("lookup").effect,
        tools.get("lookup").idempotent,
        tools.get("lookup").on_interrupt,
    )


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"effect": "delete"}, "effect"),
        ({"on_interrupt": "drop"}, "on_interrupt"),
        ({"effect": "write", "on_interrupt": "cancel"}, "on_interrupt='cancel'"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"compensate": "undo"}, "compensate"),
    ],
)
def test_registry_refuses_bad_policies(kwargs: dict[str, Any], needle: str) -> None:
    """A bad policy raises ConfigError naming the field."""
    tools = callstate.ToolRegistry()

    async def t() -> None:
        return None

    with pytest.raises(callstate.ConfigError, match=needle):
        tools.tool(**kwargs)(t)
    assert 0 == len(tools)


def test_registry_refuses_sync_functions_and_duplicates() -> None:
    """Only async functions register, each name once; unknown names raise UnknownTool."""
    tools = callstate.ToolRegistry()

    def sync() -> None:
        return None

    async def dup() -> None:
        return None

    with pytest.raises(callstate.ConfigError, match="async def"):
        tools.tool(sync)
    tools.tool(dup)
    with pytest.raises(callstate.ConfigError, match="already registered"):
        tools.tool(dup)
    with pytest.raises(callstate.UnknownTool, match="'nope'"):
        tools.get("nope")


# -- the guard -----------------------------------------------------------------------------


async def test_intent_is_durable_before_the_tool_starts(keeper: callstate.Keeper) -> None:
    """Inside the tool, the stored journal already shows the call started, key included."""
    seen: list[tuple[str, str, int]] = []
    s = await keeper.start()

    @registry(keeper).tool(effect="write")
    async def charge(amount: int, *, ctx: callstate.ToolContext) -> int:
        stored = (await keeper.load(ctx.session_id)).calls[ctx.call_id]
        seen.append((stored.status, stored.idempotency_key, stored.attempts))
        return amount

    out = await s.run_tool("charge", {"amount": 5}, call_id="c1")
    assert [("started", idempotency_key(s.id, "c1"), 1)] == seen
    assert ("succeeded", 5, False) == (out.status, out.result, out.deduplicated)
    assert "succeeded" == (await keeper.load(s.id)).calls["c1"].status


async def test_context_gives_ids_and_a_stable_key(keeper: callstate.Keeper) -> None:
    """ToolContext carries session id, call id, attempt and a key derived from both ids."""
    got: list[tuple[str, str, str, int]] = []
    s = await keeper.start()

    @registry(keeper).tool
    async def probe(*, ctx: callstate.ToolContext) -> None:
        got.append((ctx.session_id, ctx.call_id, ctx.idempotency_key, ctx.attempt))

    await s.run_tool("probe", {}, call_id="c9")
    assert [(s.id, "c9", idempotency_key(s.id, "c9"), 1)] == got
    assert idempotency_key(s.id, "c9") != idempotency_key(s.id, "c10")
    assert idempotency_key(s.id, "c9") != idempotency_key("other", "c9")


async def test_repeated_call_id_returns_the_recorded_outcome(keeper: callstate.Keeper) -> None:
    """A second run_tool with the same call id does not run the tool again."""
    runs: list[str] = []
    s = await keeper.start()

    @registry(keeper).tool(effect="write")
    async def send_sms(to: str) -> str:
        runs.append(to)
        return f"sent to {to}"

    first = await s.run_tool("send_sms", {"to": "+1555"}, call_id="c1")
    again = await s.run_tool("send_sms", {"to": "+1555"}, call_id="c1")
    assert ["+1555"] == runs
    assert (False, True) == (first.deduplicated, again.deduplicated)
    assert first.result == again.result
    assert 1 == keeper.observer.counts.get("tool.deduplicated")


async def test_repeated_call_id_while_running_awaits_the_same_run(
    keeper: callstate.Keeper,
) -> None:
    """Two concurrent requests with one call id run the tool once and share its outcome."""
    runs: list[int] = []
    gate = asyncio.Event()
    s = await keeper.start()

    @registry(keeper).tool(effect="write")
    async def slow() -> int:
        runs.append(1)
        await gate.wait()
        return 42

    a = asyncio.create_task(s.run_tool("slow", {}, call_id="c1"))
    b = asyncio.create_task(s.run_tool("slow", {}, call_id="c1"))  # during the write-ahead
    await asyncio.sleep(0)
    c = asyncio.create_task(s.run_tool("slow", {}, call_id="c1"))
    gate.set()
    first, second, third = await asyncio.gather(a, b, c)
    assert [1] == runs
    assert [42, 42, 42] == [o.result for o in (first, second, third)]
    assert [False, True, True] == [o.deduplicated for o in (first, second, third)]


async def test_call_id_reused_for_another_tool_is_a_new_call(keeper: callstate.Keeper) -> None:
    """Reusing a call id for a different tool runs it as a new call journaled as ``id#2``."""
    s = await keeper.start()

    @registry(keeper).tool
    async def a() -> str:
        return "a"

    @registry(keeper).tool
    async def b() -> str:
        return "b"

    first = await s.run_tool("a", call_id="c1")
    second = await s.run_tool("b", call_id="c1")
    assert [("c1", "a"), ("c1#2", "b")] == [(o.call_id, o.result) for o in (first, second)]
    assert (None, "c1") == (s.state.calls["c1"].wire_id, s.state.calls["c1#2"].wire_id)


async def test_unknown_tool_and_bad_arguments_end_failed(keeper: callstate.Keeper) -> None:
    """The model's mistakes are outcomes it can see: failed, with the error recorded."""
    s = await keeper.start()

    @registry(keeper).tool
    async def lookup(city: str) -> str:
        return city

    missing = await s.run_tool("nope", {}, call_id="c1")
    wrong = await s.run_tool("lookup", {"town": "Oslo"}, call_id="c2")
    assert ("failed", "UnknownTool") == (missing.status, missing.error_type)
    assert "'nope'" in (missing.error or "")
    assert ("failed", "ToolArgumentsError") == (wrong.status, wrong.error_type)
    assert "town" in (wrong.error or "")


async def test_malformed_input_is_refused_before_anything_is_recorded(
    keeper: callstate.Keeper,
) -> None:
    """Args JSON cannot carry, or too big, raise and leave the journal untouched."""
    s = await keeper.start()

    @registry(keeper).tool
    async def echo(x: Any) -> Any:
        return x

    seq = s.state.seq
    with pytest.raises(callstate.ToolArgumentsError, match="args of call 'c1'"):
        await s.run_tool("echo", {"x": object()}, call_id="c1")
    with pytest.raises(callstate.ToolArgumentsError, match="str keys"):
        await s.run_tool("echo", {1: "x"}, call_id="c1")  # type: ignore[dict-item]
    with pytest.raises(callstate.PayloadTooLarge, match="args of call 'c1'"):
        await s.run_tool("echo", {"x": "y" * 70_000}, call_id="c1")
    with pytest.raises(callstate.ToolArgumentsError, match="call_id"):
        await s.run_tool("echo", {"x": 1}, call_id="")
    assert seq == s.state.seq
    assert {} == (await keeper.load(s.id)).calls


async def test_timeout_and_exception_end_failed_with_the_error(keeper: callstate.Keeper) -> None:
    """A tool past timeout_s, or raising, ends failed with the error recorded durably."""
    s = await keeper.start()

    @registry(keeper).tool(timeout_s=0.01)
    async def hang() -> None:
        await asyncio.Event().wait()

    @registry(keeper).tool(effect="write")
    async def boom() -> None:
        raise RuntimeError("card declined")

    slow = await s.run_tool("hang", call_id="c1")
    bad = await s.run_tool("boom", call_id="c2")
    assert ("failed", "TimeoutError") == (slow.status, slow.error_type)
    assert "timed out after 0.01s" in (slow.error or "")
    assert ("failed", "RuntimeError: card declined") == (bad.status, bad.error)
    stored = await keeper.load(s.id)
    assert ("failed", "failed") == (stored.calls["c1"].status, stored.calls["c2"].status)
    assert "RuntimeError: card declined" == stored.calls["c2"].error


async def test_unstorable_results_fail_without_poisoning_the_journal(
    keeper: callstate.Keeper,
) -> None:
    """A non-JSON or oversized result ends failed naming the call; the session still loads."""
    s = await keeper.start()

    @registry(keeper).tool
    async def weird() -> object:
        return object()

    @registry(keeper).tool
    async def huge() -> str:
        return "x" * 70_000

    odd = await s.run_tool("weird", call_id="c1")
    big = await s.run_tool("huge", call_id="c2")
    assert ("failed", "ToolArgumentsError") == (odd.status, odd.error_type)
    assert "call 'c1'" in (odd.error or "")
    assert ("failed", "PayloadTooLarge") == (big.status, big.error_type)
    assert "call 'c2'" in (big.error or "")
    await s.flush()
    stored = await keeper.load(s.id)
    assert ("failed", "failed") == (stored.calls["c1"].status, stored.calls["c2"].status)


async def test_results_are_stored_in_their_json_form(keeper: callstate.Keeper) -> None:
    """A tuple result comes back as the list the store keeps, live and restored alike."""
    s = await keeper.start()

    @registry(keeper).tool
    async def pair() -> tuple[int, int]:
        return (1, 2)

    out = await s.run_tool("pair", call_id="c1")
    await s.flush()
    assert [1, 2] == out.result == (await keeper.load(s.id)).calls["c1"].result


async def test_checkpoint_is_durable(keeper: callstate.Keeper) -> None:
    """ctx.checkpoint records progress that the stored state holds while the tool runs."""
    s = await keeper.start()
    stored_progress: list[dict[str, Any]] = []

    @registry(keeper).tool(effect="write", idempotent=True)
    async def batch(*, ctx: callstate.ToolContext) -> None:
        await ctx.checkpoint({"done": 3})
        stored_progress.append((await keeper.load(s.id)).calls[ctx.call_id].progress)

    await s.run_tool("batch", call_id="c1")
    assert [{"done": 3}] == stored_progress


async def test_end_leaves_no_call_started(keeper: callstate.Keeper) -> None:
    """Ending a session gives every running call a terminal outcome: write unknown, read cancelled."""
    s = await keeper.start()
    entered = asyncio.Semaphore(0)

    @registry(keeper).tool(effect="write")
    async def stuck_write() -> None:
        entered.release()
        await asyncio.Event().wait()

    @registry(keeper).tool
    async def stuck_read() -> None:
        entered.release()
        await asyncio.Event().wait()

    w = asyncio.create_task(s.run_tool("stuck_write", call_id="w1"))
    r = asyncio.create_task(s.run_tool("stuck_read", call_id="r1"))
    await entered.acquire()
    await entered.acquire()
    await s.end(tool_grace=0)
    wo, ro = await asyncio.gather(w, r)
    assert ("unknown", "cancelled") == (wo.status, ro.status)
    stored = await keeper.load(s.id)
    assert {"w1": "unknown", "r1": "cancelled"} == {c: v.status for c, v in stored.calls.items()}
    assert "ended" == stored.status


async def test_end_waits_for_running_calls_within_the_grace(keeper: callstate.Keeper) -> None:
    """A call that finishes within tool_grace keeps its real outcome."""
    s = await keeper.start()
    gate, entered = asyncio.Event(), asyncio.Event()

    @registry(keeper).tool(effect="write")
    async def quick() -> str:
        entered.set()
        await gate.wait()
        return "done"

    t = asyncio.create_task(s.run_tool("quick", call_id="c1"))
    await entered.wait()
    asyncio.get_running_loop().call_soon(gate.set)
    await s.end(tool_grace=30)
    assert "succeeded" == (await t).status
    assert "succeeded" == (await keeper.load(s.id)).calls["c1"].status
    with pytest.raises(callstate.SessionClosed):
        await s.run_tool("quick", call_id="c2")
