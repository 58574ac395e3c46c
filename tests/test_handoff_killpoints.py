"""A process killed (SIGKILL) at each step of a handoff, on SQLite, Redis and PostgreSQL:
an offer the kill interrupted is completed (its package accepted) or withdrawn by the
sweep, never left frozen without a package; an interrupted accept is repeated, by the
same acceptor or another one, until it completes, exactly once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callstate
from callstate.journal import events as ev
from callstate.journal.state import fold
from callstate.testing import FakeClock
from killpoints import CALLER, SECRET, Backend, namespace, run_child

LEASE_TTL = 15.0  # the Keeper default, which the children run with

#: The steps of an offer, in order: the offer durable (on SQLite with its package, in
#: one transaction; on Redis and PostgreSQL not yet), then the package stored.
OFFER_POINTS = ["handoff.offer_durable", "handoff.package_stored"]

#: The steps of an accept, with the epoch the repeated accept ends at (offer + n): the
#: package moved, the session claimed, the event recorded (the claim done), the session
#: restored and owned. Redis and PostgreSQL take the first two as steps of their own.
ACCEPT_POINTS = {
    "claim.package_moved": 1,
    "claim.claimed": 2,
    "handoff.claimed": 2,
    "handoff.owned": 2,
}
STEPWISE = {"claim.package_moved", "claim.claimed"}
ACCEPT_CASES = [
    (kind, point)
    for kind in ("sqlite", "redis", "postgres")
    for point in ACCEPT_POINTS
    if kind != "sqlite" or point not in STEPWISE  # SQLite: one transaction, no such step
]


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend in turn, on a namespace of its own."""
    async with namespace(request.param, tmp_path) as b:
        yield b


def _later() -> FakeClock:
    """A clock past the lease of every process killed so far."""
    return FakeClock(time.time() + 2 * LEASE_TTL)


async def _events(store: callstate.Store, session_id: str) -> list[ev.Event]:
    return [ev.decode_event(raw) for raw in await store.read_events(session_id)]


async def _accepted_once(store: callstate.Store, session_id: str) -> list[str]:
    """The ``HandoffAccepted`` agents in the session's journal, right after its offer."""
    events = await _events(store, session_id)
    offers = [i for i, e in enumerate(events) if isinstance(e, ev.HandoffOffered)]
    assert 1 == len(offers)
    assert isinstance(events[offers[0] + 1], ev.HandoffAccepted)
    return [e.agent for e in events if isinstance(e, ev.HandoffAccepted)]


@pytest.mark.parametrize("point", OFFER_POINTS)
async def test_an_offer_killed_at_each_step_is_completed_or_withdrawn(
    backend: Backend, tmp_path: Path, point: str
) -> None:
    """The source dies at ``point``: once its lease lapses the sweep withdraws an offer
    whose package was never stored (Redis and PostgreSQL, at the offer), and an offer
    with its package stays open and is accepted by another process."""
    died = await run_child(tmp_path, backend, "source", CALLER, point)
    sid = died.value("session")
    async with callstate.Keeper(
        backend.store(), secret=SECRET, owner="sweeper", clock=_later(), sweep_every=None
    ) as keeper:
        store = keeper.store
        rec = await store.get(sid)
        assert rec is not None
        assert "offered" == rec.status
        frozen = fold(await _events(store, sid))
        assert frozen.pending_handoff is not None
        stored = await store.package_get(frozen.pending_handoff)
        result = await keeper.sweep()
        if backend.kind != "sqlite" and point == "handoff.offer_durable":
            assert stored is None  # the kill fell between the offer and its package
            assert [sid] == result.withdrawn
            last = (await _events(store, sid))[-1]
            assert isinstance(last, ev.HandoffReclaimed)
            assert (frozen.pending_handoff, frozen.epoch + 1) == (last.package_id, last.epoch)
            owned = await keeper.resume(sid)
            owned.user_said("still there?")  # not frozen any more
            await owned.flush()
            assert ("active", "triage") == (owned.state.status, owned.state.agent)
        else:
            assert stored is not None
            assert [] == result.withdrawn
            owned = await keeper.accept(frozen.pending_handoff, agent="billing")
            assert (frozen.epoch + 1, "billing") == (owned.state.epoch, owned.state.agent)
            assert ["billing"] == await _accepted_once(store, sid)


@pytest.mark.parametrize("who", ["same", "other"])
@pytest.mark.parametrize(("kind", "point"), ACCEPT_CASES)
async def test_an_accept_killed_at_each_step_is_finished_by_repeating_it(
    tmp_path: Path, kind: str, point: str, who: str
) -> None:
    """The acceptor dies at ``point``; the accept repeated by the same acceptor
    (restarted) or by another one (once the dead one's lease lapsed) completes: the
    session is the repeater's, active with the target agent, ``HandoffAccepted`` once,
    right after the offer; a further accept is refused."""
    async with (
        namespace(kind, tmp_path) as backend,
        callstate.Keeper(backend.store(), secret=SECRET, owner="source") as source,
    ):
        s = await source.start(agent="triage", caller=CALLER)
        s.user_said("my invoice is wrong")
        pkg = await s.handoff(to="billing", reason="billing question")
        await run_child(tmp_path, backend, "acceptor", pkg.package_id, point)
        # the same acceptor restarted, or another one once the dead one's lease lapsed
        owner, clock = ("acceptor", None) if who == "same" else ("acceptor-2", _later())
        async with callstate.Keeper(
            backend.store(), secret=SECRET, owner=owner, clock=clock, sweep_every=None
        ) as acceptor:
            owned = await acceptor.accept(pkg.package_id, agent="billing")
            epoch = pkg.epoch + ACCEPT_POINTS[point]
            assert (epoch, "billing", "active") == (
                owned.state.epoch,
                owned.state.agent,
                owned.state.status,
            )
            owned.user_said("hello billing")
            await owned.flush()
            store = acceptor.store
            rec = await store.get(pkg.session_id)
            assert rec is not None
            assert (owner, epoch) == (rec.lease_owner, rec.epoch)
            row = await store.package_get(pkg.package_id)
            assert row is not None
            assert "accepted" == row.status
            assert ["billing"] == await _accepted_once(store, pkg.session_id)
            with pytest.raises(callstate.HandoffStateError, match="already accepted"):
                await acceptor.accept(pkg.package_id, agent="billing")
