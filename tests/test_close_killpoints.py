"""A caller's process killed (SIGKILL) at each step of closing a call, on SQLite, Redis
and PostgreSQL: after its end is durable, after the archive insert, after scheduling.
Whoever closes the session next (the sweep expiring it, or the owner of a ring-back's
continuation) repairs it: no follow-up lost, no leg without its archive record, and no
follow-up run twice."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callstate
from callstate.archive.followups import FOLLOWUP_CLAIM_S
from callstate.testing import FakeClock
from killpoints import CALLER, GRACE, SECRET, Backend, namespace, run_child

POINTS = ["archive.end_durable", "archive.inserted", "archive.scheduled"]
WINDOW = 600.0  # the Keeper default resume window, which the child runs with
FIRST = "open a bug about the thumbnails"
SECOND = "and remind me to follow up with Markus"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend in turn, on a namespace of its own."""
    async with namespace(request.param, tmp_path) as b:
        yield b


class Runs:
    """The follow-up callback: what each run was given."""

    def __init__(self) -> None:
        self.calls: list[callstate.CallRecord] = []

    def __call__(self, call: callstate.CallRecord) -> None:
        self.calls.append(call)


def _keeper(backend: Backend, clock: FakeClock, runs: Runs) -> callstate.Keeper:
    keeper = callstate.Keeper(
        backend.store(), secret=SECRET, owner="next", clock=clock, sweep_every=None
    )
    keeper.on_call_complete(runs, name="summary", grace=GRACE)
    return keeper


@pytest.mark.parametrize("point", POINTS)
async def test_a_close_killed_at_each_step_is_repaired_by_the_sweep(
    backend: Backend, tmp_path: Path, point: str
) -> None:
    """The caller hangs up and the process dies at ``point``; the sweep that expires the
    session writes the missing record or schedules the missing follow-up, which runs
    once with the leg, and never again."""
    died = await run_child(tmp_path, backend, "caller", CALLER, point)
    sid = died.value("session")
    runs = Runs()
    clock = FakeClock(time.time() + WINDOW + 1)
    async with _keeper(backend, clock, runs) as keeper:
        assert [sid] == (await keeper.sweep()).expired
        assert [[1]] == [[leg.epoch for leg in c.legs] for c in runs.calls]
        assert [FIRST] == runs.calls[0].requests_since_last_followup
        clock.advance(FOLLOWUP_CLAIM_S + 1)  # any claim the dead process held has lapsed
        await keeper.sweep()
        assert 1 == len(runs.calls)
        assert [f"{sid}:1"] == [r.record_id for r in await keeper.archive.list(session_id=sid)]


@pytest.mark.parametrize("point", POINTS)
async def test_a_close_killed_at_each_step_then_a_ring_back_keeps_every_leg(
    backend: Backend, tmp_path: Path, point: str
) -> None:
    """The caller hangs up, the process dies at ``point`` and the caller rings back; the
    continuation's close archives the first leg if it had no record, and its follow-up
    runs once with both legs' requests; the expiry later runs nothing more."""
    died = await run_child(tmp_path, backend, "caller", CALLER, point)
    sid = died.value("session")
    runs = Runs()
    clock = FakeClock(time.time())
    async with _keeper(backend, clock, runs) as keeper:
        again = await keeper.resume_caller(CALLER)
        assert again is not None
        assert sid == again.id
        again.user_said(SECOND)
        await again.end("hangup")
        clock.advance(GRACE + 1)
        await keeper.sweep()
        assert [[1, 2]] == [[leg.epoch for leg in c.legs] for c in runs.calls]
        assert [FIRST, SECOND] == runs.calls[0].requests_since_last_followup
        clock.advance(WINDOW + FOLLOWUP_CLAIM_S)
        assert [sid] == (await keeper.sweep()).expired
        assert 1 == len(runs.calls)
        records = await keeper.archive.list(session_id=sid)
        assert [f"{sid}:1", f"{sid}:2"] == sorted(r.record_id for r in records)
