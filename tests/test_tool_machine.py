"""A hypothesis state machine over tool calls, barge-ins, contradictions, crashes and resumes.

Random interleavings of user turns, agent utterances, tool starts and results, repeated
call ids, interrupts, contradictions, crashes (the process dies: nothing unflushed
survives, running tools die with it) and resumes must keep four invariants: no
completed write is orphaned, every call has at most one terminal outcome (exactly one
once the session ends), no write runs twice, and every call in the context has exactly
one result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import callstate
from callstate.journal import events as ev
from callstate.testing import FakeClock
from test_context import check_messages

TERMINAL_EVENTS = (ev.ToolSucceeded, ev.ToolFailed, ev.ToolCancelled, ev.ToolDeduplicated)
KINDS = ["lookup", "search", "pay", "book"]


class ToolMachine(RuleBasedStateMachine):
    """One session driven through random interleavings on a shared in-memory store."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = callstate.MemoryStore()
        self.clock = FakeClock()
        self.release: dict[str, asyncio.Event] = {}  # the world lets a call finish
        self.fail: set[str] = set()  # calls whose tool raises when released
        self.executed: Counter[str] = Counter()  # side effects of non-idempotent writes
        self.applied: dict[str, str] = {}  # idempotency key -> call id (upserted once)
        self.keys: dict[str, set[str]] = {}  # call id -> keys its attempts used
        self.pending: list[asyncio.Task[Any]] = []
        self.n = 0
        self.utterance: str | None = None
        self.tools = self._registry()
        self.keeper = callstate.Keeper(self.store, tools=self.tools, clock=self.clock)
        self.session = self.run(self._start())

    # -- plumbing --------------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start(self) -> callstate.Session:
        await self.keeper.open()
        return await self.keeper.start(session_id="s")

    def ticks(self, n: int = 8) -> None:
        """Let the loop run ``n`` scheduling rounds (the flusher, the tools, the guard)."""

        async def spin() -> None:
            for _ in range(n):
                await asyncio.sleep(0)

        self.run(spin())

    def _registry(self) -> callstate.ToolRegistry:
        tools = callstate.ToolRegistry()

        async def respond() -> None:
            for _ in range(3):  # the effect happened; the response takes a moment to arrive
                await asyncio.sleep(0)

        async def wait(ctx: callstate.ToolContext) -> None:
            self.keys.setdefault(ctx.call_id, set()).add(ctx.idempotency_key)
            await self.release.setdefault(ctx.call_id, asyncio.Event()).wait()
            if ctx.call_id in self.fail:
                raise RuntimeError("the backend said no")

        @tools.tool
        async def lookup(*, ctx: callstate.ToolContext) -> str:
            await wait(ctx)
            return "found"

        @tools.tool(on_interrupt="cancel")
        async def search(*, ctx: callstate.ToolContext) -> str:
            await wait(ctx)
            return "results"

        @tools.tool(effect="write", compensate="refund")
        async def pay(*, ctx: callstate.ToolContext) -> str:
            await wait(ctx)
            self.executed[ctx.call_id] += 1  # the side effect happens after the wait
            await respond()
            return "paid"

        @tools.tool(effect="write", idempotent=True)
        async def book(*, ctx: callstate.ToolContext) -> str:
            await wait(ctx)
            self.applied.setdefault(ctx.idempotency_key, ctx.call_id)
            await respond()
            return "booked"

        @tools.tool(effect="write", idempotent=True)
        async def refund(*, ctx: callstate.ToolContext) -> str:
            self.keys.setdefault(ctx.call_id, set()).add(ctx.idempotency_key)
            self.applied.setdefault(ctx.idempotency_key, ctx.call_id)
            return "refunded"

        return tools

    def spawn(self, coro: Any) -> None:
        self.pending.append(self.loop.create_task(coro))

    def calls(self) -> list[str]:
        return sorted(self.session.state.calls)

    def in_flight(self) -> list[str]:
        return sorted(c.call_id for c in self.session.state.in_flight) or self.calls()

    # -- rules -----------------------------------------------------------------------------

    @rule(text=st.sampled_from(["", "okay", "go on", "what about Friday?", "no, stop"]))
    def user_turn(self, text: str) -> None:
        self.session.user_said(text)

    @rule(
        text=st.sampled_from(["Sure, one moment.", "Goodbye!", "Let me check that for you."]),
        step=st.sampled_from(["start", "progress", "finish"]),
        heard=st.integers(0, 12),
    )
    def agent_speaks(self, text: str, step: str, heard: int) -> None:
        if self.utterance is None or step == "start":
            self.utterance = self.session.agent_started(text)
        elif step == "finish":
            self.session.agent_finished(self.utterance)
            self.utterance = None
        else:
            item = next(i for i in self.session.state.items if i.id == self.utterance)
            self.session.agent_progress(self.utterance, spoken_text=item.text[:heard])

    @rule(kind=st.sampled_from(KINDS), ticks=st.integers(2, 8))
    def start_tool(self, kind: str, ticks: int) -> None:
        self.n += 1
        self.spawn(self.session.run_tool(kind, {}, call_id=f"c{self.n}"))
        self.ticks(ticks)

    @precondition(lambda self: self.session.state.calls)
    @rule(data=st.data())
    def repeat_call_id(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls()))
        name = self.session.state.calls[call_id].name
        self.spawn(self.session.run_tool(name, {}, call_id=call_id))
        self.ticks()

    @precondition(lambda self: self.session.state.calls)
    @rule(data=st.data(), fail=st.booleans(), ticks=st.integers(0, 8))
    def result_arrives(self, data: st.DataObject, fail: bool, ticks: int) -> None:
        call_id = data.draw(st.sampled_from(self.in_flight()))
        if fail:
            self.fail.add(call_id)
        self.release.setdefault(call_id, asyncio.Event()).set()
        self.ticks(ticks)

    @rule(kind=st.sampled_from(KINDS), answer=st.booleans(), ticks=st.integers(0, 8))
    def barge_in_during_a_call(self, kind: str, answer: bool, ticks: int) -> None:
        """The agent speaks and starts a call; the caller talks over it while it runs."""
        self.utterance = self.session.agent_started("Let me do that for you.")
        self.start_tool(kind, 8)
        self.interrupt(None)
        if answer:
            self.release.setdefault(f"c{self.n}", asyncio.Event()).set()
        self.ticks(ticks)

    @rule(heard=st.sampled_from([None, "", "Sure,"]))
    def interrupt(self, heard: str | None) -> None:
        self.session.interrupt(heard_text=heard)
        self.utterance = None
        self.ticks(2)

    @precondition(lambda self: self.session.state.calls)
    @rule(data=st.data())
    def contradict(self, data: st.DataObject) -> None:
        call_id = data.draw(st.sampled_from(self.calls()))
        call = self.session.state.calls[call_id]
        if call.name == "pay" and call.status == "succeeded":
            self.spawn(self.session.contradict(call_id))
            self.ticks()

    @rule(data=st.data(), result=st.booleans(), ticks=st.integers(0, 4))
    def crash_and_resume(self, data: st.DataObject, result: bool, ticks: int) -> None:
        """Maybe a result arrives; ``ticks`` rounds later the process dies."""
        if result and self.session.state.calls:
            call_id = data.draw(st.sampled_from(self.in_flight()))
            self.release.setdefault(call_id, asyncio.Event()).set()
        self.ticks(ticks)
        self.die_and_resume()

    @precondition(lambda self: any(c.status == "started" for c in self.session.state.in_flight))
    @rule(data=st.data(), extra=st.integers(0, 4))
    def crash_inside_a_tool(self, data: st.DataObject, extra: int) -> None:
        """A running call gets its answer; the process dies right after the side effect
        (or ``extra`` rounds later: while the outcome is recorded or made durable)."""
        started = sorted(c.call_id for c in self.session.state.in_flight if c.status == "started")
        call_id = data.draw(st.sampled_from(started))
        self.release.setdefault(call_id, asyncio.Event()).set()
        for _ in range(20):
            if self.executed[call_id] or call_id in self.applied.values():
                break
            if self.session.state.calls[call_id].terminal:
                break
            self.ticks(1)
        self.ticks(extra)
        self.die_and_resume()

    @rule()
    def taken_over_in_this_process(self) -> None:
        """Another handle in this process takes the session over while calls may run:
        their outcomes land on the new handle, and nothing runs twice."""
        self.session = self.run(self.keeper.resume("s"))
        self.session.connection_restored()  # a resumed session is on hold until its link opens
        self.utterance = None
        self.ticks()

    def die_and_resume(self) -> None:
        """The process dies (unflushed events and running tools with it); another
        process resumes the session from the store."""
        self.run(self._crash())
        self.keeper = callstate.Keeper(self.store, tools=self.tools, clock=self.clock)
        self.session = self.run(self._resume())
        self.session.connection_restored()  # a resumed session is on hold until its link opens
        self.utterance = None
        self.ticks()

    async def _crash(self) -> None:
        keeper = self.keeper
        await keeper.host.flusher.stop()  # nothing more reaches the store
        runs = list(keeper._tools.running.values())
        for r in runs:
            r.cancel_reason = "closed"  # killed with the process: no outcome recorded
            r.task.cancel()
        for t in [*keeper.host.tasks, *self.pending]:
            t.cancel()
        await asyncio.gather(
            *(r.task for r in runs), *keeper.host.tasks, *self.pending, return_exceptions=True
        )
        self.pending.clear()
        keeper.host.tasks.clear()
        await keeper.observer.stop()

    async def _resume(self) -> callstate.Session:
        await self.keeper.open()
        return await self.keeper.resume("s")

    # -- invariants ------------------------------------------------------------------------

    def journal(self) -> list[ev.Event]:
        raw = self.run(self.store.read_events("s"))
        return [ev.decode_event(r) for r in raw]

    @invariant()
    def one_terminal_outcome_per_call(self) -> None:
        """The durable journal holds at most one terminal outcome per call."""
        ends = Counter(
            e.call_id
            for e in self.journal()
            if isinstance(e, TERMINAL_EVENTS)
            or (isinstance(e, ev.ToolInDoubt) and e.resolution == "unknown")
        )
        assert [] == [c for c, n in ends.items() if n > 1]

    @invariant()
    def no_duplicate_execution(self) -> None:
        """A non-idempotent write runs at most once; every attempt of a call uses one key."""
        assert [] == [c for c, n in self.executed.items() if n > 1]
        assert [] == [c for c, keys in self.keys.items() if len(keys) > 1]

    @invariant()
    def every_call_in_the_context_has_one_result(self) -> None:
        """The context is valid for the API and pairs each call with exactly one result."""
        messages = self.session.context()
        check_messages(messages)
        ids = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
        assert self.calls() == sorted(ids)

    @invariant()
    def no_orphaned_completed_write(self) -> None:
        """A write that took effect is in the context as done (or unknown), never lost,
        never discarded, and no longer held once the caller finished a turn after it."""
        state = self.session.state
        messages = {m.get("tool_call_id"): m for m in self.session.context()}
        for call in state.calls.values():
            if call.effect != "write":
                continue
            took_effect = self.executed[call.call_id] > 0 or call.call_id in self.applied.values()
            if took_effect and call.terminal:
                assert call.status in ("succeeded", "unknown"), (call.call_id, call.status)
            if call.status == "succeeded":
                content = json.loads(messages[call.call_id]["content"])
                assert "succeeded" == content["status"]
                assert "discarded" != call.delivery
            if call.delivery == "held":
                ref = call.overtaken_turn if call.overtaken else call.turn
                assert state.turn <= ref, f"{call.call_id} still held after the caller's turn"

    def teardown(self) -> None:
        """End the session: afterwards no call is left without exactly one outcome."""
        try:
            self.run(self._end())
            state = self.run(self.keeper.load("s"))
            assert [] == [c.call_id for c in state.calls.values() if not c.terminal]
            self.one_terminal_outcome_per_call()
            ended = Counter(
                e.call_id
                for e in self.journal()
                if isinstance(e, TERMINAL_EVENTS)
                or (isinstance(e, ev.ToolInDoubt) and e.resolution == "unknown")
            )
            assert sorted(state.calls) == sorted(ended)
        finally:
            self.run(self._close())
            self.loop.close()

    async def _end(self) -> None:
        # calls still blocked are left to the end of the session to settle
        await self.session.end(tool_grace=0)
        if (
            self.pending
        ):  # they all end with the session; the bound only turns a hang into a failure
            _, stuck = await asyncio.wait(self.pending, timeout=10)
            assert set() == stuck, "calls still running after the session ended"

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.keeper.close()
        for t in self.pending:
            t.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)


# a fixed seed keeps the run reproducible; the rules target the crash windows that matter
ToolMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, derandomize=True, database=None
)
TestToolMachine = ToolMachine.TestCase
