"""Cancelling a task that awaits a callstate entry point cancels it, and loses nothing.

Each test holds one store call at a gate, so the entry point is parked inside it, then
cancels the awaiting task. The task must end cancelled (never swallow the cancellation,
never hang), and once the gate opens the journal is whole: what was recorded lands, and
the session can be resumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.errors import CallstateError
from callstate.storage.abilities import Landed
from callstate.storage.base import Batch, Store
from callstate.storage.sqlite import SQLiteStore
from callstate.testing import FakeClock
from soon import answer_soon

SECRET = b"cancellation-test-secret-0123456789"
#: a safety net only: a task that swallowed its cancellation would hang here forever
LIMIT = 10.0


class GatedStore:
    """A real store whose named methods wait at a gate once ``hold`` names them."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.hold: set[str] = set()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.hold:
                self.entered.set()
                await self.gate.wait()
            return await method(*args, **kwargs)

        return call

    def release(self) -> None:
        self.hold.clear()
        self.gate.set()


class GatedSoonStore(GatedStore):
    """A GatedStore that answers appends by callback too (``AppendsSoon``), as the SQLite
    store's thread does: the flusher then starts rounds from the flush itself."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self._running: set[asyncio.Task[None]] = set()

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        result: list[CallstateError | None] = await self.__getattr__("append")(batches)
        return result

    def append_soon(self, batches: Sequence[Batch], landed: Landed) -> None:
        answer_soon(self.append, batches, landed, self._running)


@pytest.fixture(params=["task", "callback"])
def gated(tmp_path: Path, request: pytest.FixtureRequest) -> GatedStore:
    """A gated store around a real SQLite file (the keeper opens and closes it), with
    the flusher awaiting appends in its task or taking answers by callback."""
    inner = SQLiteStore(f"sqlite:///{tmp_path}/cs.db")
    return GatedStore(inner) if request.param == "task" else GatedSoonStore(inner)


async def _cancel_while_held(gated: GatedStore, start: Callable[[], Any]) -> None:
    """Start ``start()`` as a task, wait until it is parked at the gate, cancel it."""
    gated.entered.clear()
    task = asyncio.ensure_future(start())
    async with asyncio.timeout(LIMIT):
        await gated.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(LIMIT):
            await task
    assert task.cancelled()


async def test_cancelling_flush_cancels_it_and_the_events_still_land(gated: GatedStore) -> None:
    """A cancelled ``flush`` ends cancelled; the queued events are written once the store answers."""
    async with callstate.Keeper(gated, clock=FakeClock(), sweep_every=None) as keeper:
        s = await keeper.start()
        gated.hold = {"append"}
        s.user_said("I'd like to move my booking to Friday evening, please.")
        await _cancel_while_held(gated, s.flush)
        gated.release()
        await s.flush()
        stored = await keeper.load(s.id)
        assert ["I'd like to move my booking to Friday evening, please."] == [
            i.text for i in stored.items if i.kind == "user"
        ]


async def test_cancelling_run_tool_leaves_the_write_to_finish_and_record(
    gated: GatedStore,
) -> None:
    """A cancelled ``run_tool`` ends cancelled at once; the write finishes and its outcome is durable."""
    tools = callstate.ToolRegistry()
    proceed = asyncio.Event()
    started = asyncio.Event()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str, time: str) -> dict[str, str]:
        started.set()
        await proceed.wait()
        return {"booking_id": booking_id, "time": time, "status": "moved"}

    async with callstate.Keeper(gated, clock=FakeClock(), tools=tools, sweep_every=None) as keeper:
        s = await keeper.start()
        task = asyncio.ensure_future(
            s.run_tool("move_booking", {"booking_id": "B1042", "time": "20:00"}, call_id="c1")
        )
        async with asyncio.timeout(LIMIT):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(LIMIT):
                await task
        proceed.set()
        again = await s.run_tool(
            "move_booking", {"booking_id": "B1042", "time": "20:00"}, call_id="c1"
        )
        assert ("succeeded", True) == (again.status, again.deduplicated)
        stored = await keeper.load(s.id)
        assert "succeeded" == stored.calls["c1"].status


@pytest.mark.parametrize("held", ["claim", "append"])
async def test_cancelling_resume_leaves_the_session_resumable(gated: GatedStore, held: str) -> None:
    """A resume cancelled while it records the new ownership ends cancelled; a later
    resume works: inside the one commit that claims and journals ``session.resumed``
    (SQLite), and between the claim and that append (a store without atomic claims)."""
    if held == "append":
        gated.atomic_packages = False  # as PostgreSQL and Redis: claim, then append
    clock = FakeClock()
    async with callstate.Keeper(gated, clock=clock, secret=SECRET, sweep_every=None) as a:
        s = await a.start(caller="+15551234567")
        s.user_said("Hello, I need to change my reservation.")
        await s.flush()
        token = s.resume_token()
        await s.close()
        async with callstate.Keeper(gated, clock=clock, secret=SECRET, sweep_every=None) as b:
            gated.hold = {held}
            await _cancel_while_held(gated, lambda: b.resume(token))
            gated.release()
        async with callstate.Keeper(gated, clock=clock, secret=SECRET, sweep_every=None) as c:
            resumed = await c.resume(s.id)
            assert ["Hello, I need to change my reservation."] == [
                i.text for i in resumed.state.items if i.kind == "user"
            ]
            assert resumed.state.epoch >= 2


async def test_cancelling_accept_leaves_the_handoff_completable(gated: GatedStore) -> None:
    """An accept cancelled inside its claim ends cancelled; the same accept then completes."""
    clock = FakeClock()
    async with callstate.Keeper(gated, clock=clock, secret=SECRET, sweep_every=None) as a:
        s = await a.start(agent="triage")
        s.user_said("I have a question about my last invoice.")
        package = await s.handoff(to="billing", reason="billing question")
        data = package.to_bytes()
        async with callstate.Keeper(gated, clock=clock, secret=SECRET, sweep_every=None) as b:
            gated.hold = {"claim"}
            await _cancel_while_held(gated, lambda: b.accept(data))
            gated.release()
            accepted = await b.accept(data)
            assert ("billing", package.epoch + 1) == (accepted.state.agent, accepted.state.epoch)


async def test_cancelling_end_still_ends_the_call(gated: GatedStore) -> None:
    """An ``end`` cancelled while its end is being flushed ends cancelled; the end still lands."""
    async with callstate.Keeper(gated, clock=FakeClock(), sweep_every=None) as keeper:
        s = await keeper.start()
        s.user_said("That's all, thank you.")
        gated.hold = {"append"}
        await _cancel_while_held(gated, lambda: s.end("caller_hangup"))
        gated.release()
        await s.flush()
        assert "ended" == (await keeper.load(s.id)).status


class AfterAppend:
    """A real store that calls ``then()`` the moment each ``append`` has returned."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.then: Callable[[], None] = lambda: None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name != "append":
            return method

        async def append(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            self.then()
            return result

        return append


def _cancel_in(
    hops: int, task: asyncio.Future[Any], accepted: list[bool], done: asyncio.Event
) -> None:
    """Cancel ``task`` after ``hops`` turns of the event loop; note whether it was accepted."""
    if hops == 0:
        accepted.append(task.cancel())
        done.set()
    else:
        asyncio.get_running_loop().call_soon(_cancel_in, hops - 1, task, accepted, done)


async def test_a_cancel_landing_as_the_commit_completes_is_never_swallowed(
    tmp_path: Path,
) -> None:
    """A cancel accepted at any loop turn between the commit and the waiter waking ends the flush cancelled."""
    raced = 0
    for hops in range(16):
        store = AfterAppend(SQLiteStore(f"sqlite:///{tmp_path}/race{hops}.db"))
        async with callstate.Keeper(store, clock=FakeClock(), sweep_every=None) as keeper:
            s = await keeper.start()
            s.user_said("Could you check whether the dentist has anything on Thursday?")
            task = asyncio.ensure_future(s.flush())
            accepted: list[bool] = []
            cancelled = asyncio.Event()
            store.then = lambda: _cancel_in(hops, task, accepted, cancelled)  # noqa: B023
            async with asyncio.timeout(LIMIT):
                await asyncio.wait([task])
                await cancelled.wait()  # the cancel may come after the flush returned
            store.then = lambda: None
            assert [True] == accepted or [False] == accepted
            if accepted[0]:
                raced += 1
                assert task.cancelled(), f"cancel accepted {hops} loop turns after the commit"
            await s.flush()
            stored = await keeper.load(s.id)
            assert ["Could you check whether the dentist has anything on Thursday?"] == [
                i.text for i in stored.items if i.kind == "user"
            ]
    # the first turns after the commit always find the flush still waiting
    assert raced >= 1
