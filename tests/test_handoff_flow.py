"""Offer, accept and reclaim between keepers sharing one SQLite file: fencing and ownership."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.journal import events as ev
from callstate.testing import FakeClock

SECRET = b"handoff-flow-secret-0123456789ab"


@dataclass
class Pair:
    a: callstate.Keeper  # the source agent's process
    b: callstate.Keeper  # the target agent's process
    clock: FakeClock


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """Two keepers, each with its own connection to one SQLite file, one secret, one clock."""
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/cs.db"
    a = callstate.Keeper(url, secret=SECRET, clock=clock)
    b = callstate.Keeper(url, secret=SECRET, clock=clock)
    async with a, b:
        yield Pair(a, b, clock)


async def _conversation(k: callstate.Keeper) -> callstate.Session:
    s = await k.start(agent="triage", caller="+15551234567", userdata={"plan": "pro"})
    s.user_said("I have a billing question about booking B1")
    u = s.agent_started("Let me check that booking")
    s.agent_finished(u)
    u = s.agent_started("It is at seven; I'll pass you to billing")
    s.agent_finished(u)
    s.user_partial("and can you also")
    await s.flush()
    return s


async def _journal(k: callstate.Keeper, sid: str) -> list[ev.Event]:
    return [ev.decode_event(raw) for raw in await k.store.read_events(sid)]


# -- offering freezes the source --------------------------------------------------------


async def test_offer_freezes_source_and_stores_the_package(pair: Pair) -> None:
    """After handoff(), recording and flush raise SessionFrozen; the offer and package are stored."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing", reason="billing question")
    with pytest.raises(callstate.SessionFrozen, match="offered to agent 'billing'"):
        s.user_said("hello?")
    with pytest.raises(callstate.SessionFrozen):
        s.update_userdata(x=1)
    with pytest.raises(callstate.SessionFrozen):
        await s.flush()
    row = await pair.b.store.package_get(pkg.package_id)
    assert row is not None
    assert ("offered", s.id) == (row.status, row.session_id)
    stored = await pair.b.load(s.id)
    assert ("offered", pkg.package_id, "billing") == (
        stored.status,
        stored.pending_handoff,
        stored.handoff_to,
    )
    last = (await _journal(pair.b, s.id))[-1]
    assert isinstance(last, ev.HandoffOffered)
    assert (pkg.package_id, "billing", "billing question") == (
        last.package_id,
        last.to_agent,
        last.reason,
    )
    await s.close()  # closing a frozen handle is quiet: its offer is already durable


async def test_offer_needs_a_secret_and_leaves_the_session_writable(tmp_path: Path) -> None:
    """Without Keeper(secret=...) handoff raises ConfigError and freezes nothing."""
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", clock=FakeClock()) as k:
        s = await k.start(agent="triage")
        with pytest.raises(callstate.ConfigError, match="secret"):
            await s.handoff(to="billing")
        s.user_said("still here")
        await s.flush()
        assert "active" == s.state.status


@pytest.mark.parametrize("to", ["", None, 7])
async def test_offer_refuses_a_bad_target(pair: Pair, to: Any) -> None:
    """`to` must name an agent; nothing is frozen when it does not."""
    s = await pair.a.start(agent="triage")
    with pytest.raises(callstate.HandoffError, match="`to`"):
        await s.handoff(to=to)
    s.user_said("fine")
    assert "active" == s.state.status


async def test_failed_summary_withdraws_the_offer(pair: Pair) -> None:
    """A summarize hook that raises withdraws the offer: the session records again."""
    s = await _conversation(pair.a)

    def broken(messages: list[dict[str, Any]]) -> str:
        raise RuntimeError("summarizer down")

    with pytest.raises(RuntimeError, match="summarizer down"):
        await s.handoff(to="billing", max_items=1, summarize=broken)
    s.user_said("are you there?")
    await s.flush()
    journal = await _journal(pair.b, s.id)
    offered = [e for e in journal if isinstance(e, ev.HandoffOffered)]
    withdrawn = [e for e in journal if isinstance(e, ev.HandoffReclaimed)]
    assert 1 == len(offered)
    assert (offered[0].package_id, 1) == (withdrawn[0].package_id, withdrawn[0].epoch)
    assert None is await pair.b.store.package_get(offered[0].package_id)
    assert ("active", 1) == (s.state.status, s.state.epoch)


async def test_oversized_package_is_refused_and_withdrawn(tmp_path: Path) -> None:
    """A package over handoff_max_bytes raises PayloadTooLarge; the session stays usable."""
    url = f"sqlite:///{tmp_path}/cs.db"
    async with callstate.Keeper(url, secret=SECRET, handoff_max_bytes=600) as k:
        s = await k.start(agent="triage")
        s.user_said("x" * 1000)
        with pytest.raises(callstate.PayloadTooLarge, match="handoff_max_bytes=600"):
            await s.handoff(to="billing")
        s.user_said("ok")
        await s.flush()
        assert "active" == s.state.status


# -- accepting ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["package", "bytes", "id"])
async def test_accept_takes_epoch_plus_one_and_records_it(pair: Pair, form: str) -> None:
    """accept(pkg | bytes | id) owns the session at epoch+1 as the target agent."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing", reason="billing question", summary="wants a refund")
    ref: Any = {"package": pkg, "bytes": pkg.to_bytes(), "id": pkg.package_id}[form]
    t = await pair.b.accept(ref, agent="billing")
    assert (s.id, 2, "billing", "active") == (t.id, t.state.epoch, t.state.agent, t.state.status)
    last = (await _journal(pair.a, s.id))[-1]
    assert isinstance(last, ev.HandoffAccepted)
    assert (pkg.package_id, "billing", 2, "triage") == (
        last.package_id,
        last.agent,
        last.epoch,
        last.from_agent,
    )
    assert pkg.messages == t.context()
    assert ({"plan": "pro"}, "and can you also") == (t.state.userdata, t.state.partial)
    row = await pair.a.store.package_get(pkg.package_id)
    assert row is not None
    assert "accepted" == row.status
    t.user_said("I was double charged")
    await t.flush()
    with pytest.raises(callstate.SessionFrozen):
        s.user_said("stale")


async def test_package_is_accepted_once(pair: Pair) -> None:
    """A second accept, from any keeper and in any form, raises HandoffStateError."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    t = await pair.b.accept(pkg.package_id)
    for k, ref in ((pair.b, pkg.package_id), (pair.a, pkg.to_bytes()), (pair.a, pkg)):
        with pytest.raises(callstate.HandoffStateError, match="already accepted"):
            await k.accept(ref)
    assert 2 == t.state.epoch
    assert 2 == (await pair.a.load(s.id)).epoch


async def test_concurrent_accepts_have_one_winner(pair: Pair) -> None:
    """Two accepts racing from two keepers: exactly one succeeds."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    results = await asyncio.gather(
        pair.a.accept(pkg.package_id), pair.b.accept(pkg.package_id), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, callstate.Session)]
    lost = [r for r in results if isinstance(r, callstate.HandoffStateError)]
    assert (1, 1) == (len(won), len(lost))
    assert 2 == (await pair.a.load(s.id)).epoch


async def test_accept_by_another_agent_is_refused_and_the_offer_stays_open(pair: Pair) -> None:
    """agent= must match the package's target; a mismatch consumes nothing."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    with pytest.raises(
        callstate.HandoffStateError, match="offered to agent 'billing', not to 'sales'"
    ):
        await pair.b.accept(pkg, agent="sales")
    t = await pair.b.accept(pkg, agent="billing")
    assert "billing" == t.state.agent


async def test_bad_references_are_refused_without_touching_the_store(pair: Pair) -> None:
    """Unknown ids, tampered bytes and foreign packages fail; the real offer still works."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    data = pkg.to_bytes()
    with pytest.raises(callstate.HandoffStateError, match="unknown"):
        await pair.b.accept("no-such-package")
    with pytest.raises(callstate.HandoffFormatError, match="signature"):
        await pair.b.accept(data.replace(b"billing", b"sales"))
    foreign = callstate.HandoffPackage(pkg.payload).to_bytes(b"some-other-secret-0123456789abc")
    with pytest.raises(callstate.HandoffFormatError, match="signature"):
        await pair.b.accept(foreign)
    with pytest.raises(callstate.HandoffFormatError, match="expected a HandoffPackage"):
        await pair.b.accept(42)  # type: ignore[arg-type]
    row = await pair.b.store.package_get(pkg.package_id)
    assert row is not None
    assert "offered" == row.status
    assert 2 == (await pair.b.accept(data)).state.epoch


async def test_interrupted_accept_can_be_completed(pair: Pair) -> None:
    """A crash after the package moved to accepted but before the claim is finished by a retry."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    # what a crashed accepter left behind: the package moved, the session not yet claimed
    assert await pair.b.store.package_transition(pkg.package_id, "offered", "accepted")
    assert "offered" == (await pair.b.load(s.id)).status
    with pytest.raises(callstate.HandoffStateError, match="already accepted"):
        await pair.b.reclaim(pkg, handoff_timeout=0.001)
    t = await pair.b.accept(pkg.package_id)
    assert (2, "billing") == (t.state.epoch, t.state.agent)
    with pytest.raises(callstate.HandoffStateError, match="already accepted"):
        await pair.a.accept(pkg.package_id)


async def test_a_session_resumed_meanwhile_is_not_accepted(pair: Pair) -> None:
    """If the session moved on (plain resume) the package no longer applies."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    r = await pair.b.resume(s.id)
    assert 2 == r.state.epoch
    with pytest.raises(callstate.HandoffStateError, match="moved on"):
        await pair.a.accept(pkg.package_id)


# -- reclaiming ---------------------------------------------------------------------------


async def test_reclaim_waits_for_the_timeout_then_takes_the_session_back(pair: Pair) -> None:
    """Before handoff_timeout reclaim fails; after it the source owns epoch+1 and accept fails."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    with pytest.raises(callstate.HandoffStateError, match="still open"):
        await pair.a.reclaim(pkg.package_id)
    pair.clock.advance(pair.a.handoff_timeout + 1)
    r = await pair.a.reclaim(pkg.package_id)
    assert (2, "triage", "active", None) == (
        r.state.epoch,
        r.state.agent,
        r.state.status,
        r.state.pending_handoff,
    )
    last = (await _journal(pair.b, s.id))[-1]
    assert isinstance(last, ev.HandoffReclaimed)
    assert (pkg.package_id, 2) == (last.package_id, last.epoch)
    with pytest.raises(callstate.HandoffStateError, match="already reclaimed"):
        await pair.b.accept(pkg.package_id)
    r.user_said("sorry, billing is busy; I can help")
    await r.flush()


async def test_reclaim_timeout_is_an_argument_too(pair: Pair) -> None:
    """reclaim(handoff_timeout=...) overrides the keeper's setting."""
    s = await _conversation(pair.a)
    pkg = await s.handoff(to="billing")
    pair.clock.advance(5)
    with pytest.raises(callstate.HandoffStateError, match="still open"):
        await pair.a.reclaim(pkg, handoff_timeout=10)
    assert 2 == (await pair.a.reclaim(pkg, handoff_timeout=5)).state.epoch


# -- trimming -------------------------------------------------------------------------------


async def test_trimmed_handoff_gives_the_target_the_summary_and_newest_items(pair: Pair) -> None:
    """max_items keeps the newest items; the target's context equals the package's messages."""
    s = await _conversation(pair.a)
    full = s.context()
    pkg = await s.handoff(to="billing", max_items=2)
    t = await pair.b.accept(pkg)
    assert pkg.messages == t.context()
    # the items stay in the state (archive, turn counting); only the context drops them
    assert (len(s.state.items), len(s.state.items) - 2) == (
        len(t.state.items),
        t.state.summarized,
    )
    assert t.context()[0]["role"] == "system"
    assert t.context()[0]["content"].startswith('Earlier in this call: the caller said "I have')
    assert full[-1] == t.context()[-1]


async def test_summarize_hook_may_be_async_and_sees_the_trimmed_messages(pair: Pair) -> None:
    """A keeper-level async summarize receives the trimmed part as OpenAI messages."""
    seen: list[list[dict[str, Any]]] = []

    async def summarize(messages: list[dict[str, Any]]) -> str:
        seen.append(messages)
        return f"{len(messages)} earlier messages"

    pair.a.summarize = summarize
    s = await _conversation(pair.a)
    full = s.context()
    pkg = await s.handoff(to="billing", max_items=1)
    assert [full[: len(seen[0])]] == seen
    assert {"role": "system", "content": f"{len(seen[0])} earlier messages"} == pkg.messages[0]
    t = await pair.b.accept(pkg)
    assert pkg.messages == t.context()


# -- a store written against the protocol before claims carried packages -----------------


class OldProtocolStore:
    """A real SQLite store behind the older protocol: a ``claim`` that takes no package
    move and no batch, and no ``atomic_packages``."""

    atomic_packages = False

    def __init__(self, inner: callstate.Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float
    ) -> int:
        return await self.inner.claim(session_id, expected_epoch, owner, lease_until)


async def test_handoff_works_on_a_store_of_the_older_protocol(tmp_path: Path) -> None:
    """Offer, accept (once) and reclaim go step by step on such a store, with the same
    outcome: the package stored after the offer, then moved, the session claimed and the
    acceptance recorded right after the offer."""
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/cs.db"
    a = callstate.Keeper(OldProtocolStore(callstate.open_store(url)), secret=SECRET, clock=clock)
    b = callstate.Keeper(OldProtocolStore(callstate.open_store(url)), secret=SECRET, clock=clock)
    async with a, b:
        s = await _conversation(a)
        pkg = await s.handoff(to="billing")
        t = await b.accept(pkg.package_id, agent="billing")
        assert (2, "billing", "active") == (t.state.epoch, t.state.agent, t.state.status)
        last = (await _journal(b, s.id))[-2:]
        assert [ev.HandoffOffered, ev.HandoffAccepted] == [type(e) for e in last]
        with pytest.raises(callstate.HandoffStateError, match="already accepted"):
            await a.accept(pkg.package_id)
        t.user_said("thanks")
        back = await t.handoff(to="triage")
        clock.advance(b.handoff_timeout + 1)
        r = await b.reclaim(back.package_id)
        assert (3, "billing") == (r.state.epoch, r.state.agent)
        row = await b.store.package_get(back.package_id)
        assert row is not None
        assert "reclaimed" == row.status
