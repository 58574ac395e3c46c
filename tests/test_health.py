"""Health classes: derived from the journaled run, on every archive record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import callstate
from callstate.archive.health import (
    HEALTH_CLASSES,
    Health,
    RunFacts,
    classify,
    with_followups,
)
from callstate.archive.records import ArchiveRecord, decode_record
from callstate.journal import events as ev
from callstate.testing import FakeClock

GOLDEN = Path(__file__).parent / "golden"
MakeKeeper = Callable[..., callstate.Keeper]
OUTCOMES = ["completed", "recovered", "superseded", "abandoned", "failed"]
CAUSES = ["", "ended", "lease_expired", "link_lost", "released", "taken_over", "idle", "handoff"]
REASONS = [None, "ended", "caller_hangup", "hangup", "agent_done", "participant_disconnected"]

facts = st.builds(
    RunFacts,
    outcome=st.sampled_from(OUTCOMES),
    began_cause=st.sampled_from(CAUSES),
    lost_cause=st.sampled_from(CAUSES),
    end_reason=st.sampled_from(REASONS),
    link_restores=st.integers(0, 3),
    failed_tools=st.integers(0, 3),
)


# -- the pure rules --------------------------------------------------------------------


@given(facts)
def test_every_run_gets_exactly_one_known_class(f: RunFacts) -> None:
    """classify is total and returns one of the documented classes."""
    assert classify(f).kind in HEALTH_CLASSES


@given(facts)
def test_failed_is_a_failed_end_or_a_failed_tool_call(f: RunFacts) -> None:
    """A run is failed exactly when it ended failed or one of its tool calls failed,
    and the failed calls are counted."""
    h = classify(f)
    assert (f.outcome == "failed" or f.failed_tools > 0) == (h.kind == "failed")
    assert f.failed_tools == h.failed_tools


@given(facts)
def test_worker_lost_is_an_expiry_after_the_lease_lapsed(f: RunFacts) -> None:
    """worker_lost means: abandoned, the journaled cause lease_expired, nothing failed."""
    worker_lost = (
        f.outcome == "abandoned" and f.lost_cause == "lease_expired" and f.failed_tools == 0
    )
    assert worker_lost == (classify(f).kind == "worker_lost")


@given(facts)
def test_recovered_and_ok_are_only_runs_that_ended(f: RunFacts) -> None:
    """recovered, caller_ended and ok only ever describe a run that ended (not expired
    or superseded); recovered needs a resumed drop or crash, ok and caller_ended none."""
    h = classify(f)
    if h.kind in ("recovered", "caller_ended", "ok"):
        assert f.outcome in ("completed", "recovered")
        resumed_drop = f.began_cause in ("link_lost", "lease_expired", "released")
        assert (h.kind == "recovered") == (resumed_drop or f.link_restores > 0)


@given(facts, st.lists(st.sampled_from(["succeeded", "dead", "orphaned", "retrying", ""])))
def test_a_dead_or_orphaned_follow_up_makes_the_call_failed(f: RunFacts, states: list[str]) -> None:
    """with_followups turns a call failed when a follow-up is dead or orphaned, counting
    them, and otherwise leaves its class alone."""
    before = classify(f)
    after = with_followups(before, states)
    failed = sum(1 for s in states if s in ("dead", "orphaned"))
    assert (before if not failed else "failed") == (after if not failed else after.kind)
    assert failed == after.failed_followups


def test_caller_hang_up_reasons_are_caller_ended() -> None:
    """An end reason naming the caller is caller_ended; any other end is ok."""
    kinds = [
        classify(RunFacts(outcome="completed", end_reason=r)).kind
        for r in ("caller_hangup", "hangup", "participant_disconnected", "agent_done")
    ]
    assert ["caller_ended", "caller_ended", "caller_ended", "ok"] == kinds


# -- stored formats --------------------------------------------------------------------


def test_records_written_before_health_classes_decode_with_none() -> None:
    """archive_v1.json (and the sealed v2 golden) predate health: health is None."""
    for name in ("archive_v1.json", "archive_v2_sealed.json"):
        assert decode_record((GOLDEN / name).read_bytes()).health is None


def test_the_golden_record_with_health_decodes_to_its_class() -> None:
    """archive_v1_health.json decodes with the class its journal gave it."""
    record = decode_record((GOLDEN / "archive_v1_health.json").read_bytes())
    assert Health(kind="recovered", cause="link_lost", recoveries=2) == record.health


# -- journaled causes, end to end ------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def keepers(tmp_path: Path, clock: FakeClock) -> AsyncIterator[MakeKeeper]:
    """Keepers on one SQLite file, each with its own store, like separate processes."""
    async with AsyncExitStack() as stack:
        made: list[callstate.Keeper] = []

        def make(**kw: object) -> callstate.Keeper:
            kw.setdefault("secret", b"health-test-secret-32-bytes-long")
            k = callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", clock=clock, **kw)  # type: ignore[arg-type]
            made.append(k)
            return k

        stack.push_async_callback(lambda: asyncio.gather(*(k.close() for k in made)))
        yield make


async def _records(keeper: callstate.Keeper, session_id: str) -> list[ArchiveRecord]:
    return sorted(await keeper.archive.list(session_id=session_id), key=lambda r: r.epoch)


def _kinds(records: list[ArchiveRecord]) -> list[tuple[str, str, str]]:
    return [
        (r.outcome, r.health.kind, r.health.cause) if r.health else ("", "", "") for r in records
    ]


async def test_an_ordinary_end_is_ok_and_a_hang_up_caller_ended(keepers: MakeKeeper) -> None:
    """A call the agent ends is ok; one the caller hangs up on is caller_ended."""
    k = keepers()
    await k.open()
    a, b = await k.start(), await k.start()
    await a.end(reason="resolved")
    await b.end(reason="caller_hangup")
    assert [("completed", "ok", "resolved")] == _kinds(await _records(k, a.id))
    assert [("completed", "caller_ended", "caller_hangup")] == _kinds(await _records(k, b.id))


async def test_a_resumed_drop_is_recovered_and_journals_link_lost(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """A drop resumed by token journals cause link_lost: the first leg is superseded
    by it, the continuation recovered."""
    k = keepers()
    await k.open()
    s = await k.start()
    s.connection_lost("network switch")
    await s.flush()
    clock.advance(5)
    s2 = await k.resume(s.resume_token())
    resumed = [e for e in (await k.store.load(s.id)).events if b"session.resumed" in e]
    assert "link_lost" == ev.decode_event(resumed[0]).cause  # type: ignore[union-attr]
    await s2.end(reason="caller_hangup")
    assert [
        ("superseded", "superseded", "link_lost"),
        ("recovered", "recovered", "link_lost"),
    ] == _kinds(await _records(k, s.id))


async def test_a_crashed_worker_resumed_elsewhere_is_recovered(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """Another worker taking over a session whose lease lapsed journals lease_expired."""
    a, b = keepers(owner="a"), keepers(owner="b")
    await a.open()
    await b.open()
    s = await a.start()
    await s.flush()
    clock.advance(a.lease_ttl + 1)
    taken = await b.resume(s.id, via="takeover")
    await taken.end(reason="resolved")
    assert [
        ("superseded", "superseded", "lease_expired"),
        ("recovered", "recovered", "lease_expired"),
    ] == _kinds(await _records(b, s.id))


async def test_a_released_session_resumed_is_recovered(keepers: MakeKeeper) -> None:
    """An owner that let go without ending (close) journals released; the resume recovers."""
    a, b = keepers(owner="a"), keepers(owner="b")
    await a.open()
    await b.open()
    s = await a.start()
    await s.close()
    taken = await b.resume(s.id)
    await taken.end(reason="resolved")
    assert [
        ("superseded", "superseded", "released"),
        ("recovered", "recovered", "released"),
    ] == _kinds(await _records(b, s.id))


async def test_a_takeover_from_a_live_owner_is_superseded_then_ok(keepers: MakeKeeper) -> None:
    """Taking a call from a live owner with its link up journals taken_over; the taker's
    leg recovers nothing, so it is ok (its outcome still says it began with a resume)."""
    a, b = keepers(owner="a"), keepers(owner="b")
    await a.open()
    await b.open()
    s = await a.start()
    await s.flush()
    taken = await b.resume(s.resume_token(), takeover=True)
    await taken.end(reason="resolved")
    assert [
        ("superseded", "superseded", "taken_over"),
        ("recovered", "ok", "resolved"),
    ] == _kinds(await _records(b, s.id))


async def test_an_expired_call_whose_worker_died_is_worker_lost(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """A session whose owner stopped heartbeating, expired by another keeper's sweep,
    is abandoned with class worker_lost (cause lease_expired)."""
    a, b = keepers(owner="a"), keepers(owner="b")
    await a.open()
    await b.open()
    s = await a.start()
    await s.flush()
    clock.advance(a.resume_window + a.lease_ttl + 1)
    await b.sweep()
    assert [("abandoned", "worker_lost", "lease_expired")] == _kinds(await _records(b, s.id))


async def test_an_expired_drop_or_silence_is_caller_never_returned(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """Past the window with the owner alive: a dropped link (link_lost) and a silent
    caller (idle) are both caller_never_returned."""
    k = keepers()
    await k.open()
    dropped, silent = await k.start(), await k.start()
    dropped.connection_lost("carrier dropped")
    await dropped.flush()
    await silent.flush()
    clock.advance(k.resume_window + 1)
    await k.sweep()
    assert [("abandoned", "caller_never_returned", "link_lost")] == _kinds(
        await _records(k, dropped.id)
    )
    assert [("abandoned", "caller_never_returned", "idle")] == _kinds(await _records(k, silent.id))


async def test_a_failed_tool_call_makes_a_completed_call_failed(keepers: MakeKeeper) -> None:
    """A call whose tool call failed is outcome completed but health failed, counted."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def lookup() -> dict[str, str]:
        raise RuntimeError("backend down")

    k = keepers(tools=tools)
    await k.open()
    s = await k.start()
    await s.run_tool("lookup", {}, call_id="c1")
    await s.end(reason="resolved")
    (record,) = await _records(k, s.id)
    assert ("completed", Health(kind="failed", cause="resolved", failed_tools=1)) == (
        record.outcome,
        record.health,
    )


def test_health_round_trips_in_a_record() -> None:
    """A record's health survives its stored JSON form."""
    record = decode_record((GOLDEN / "archive_v1_health.json").read_bytes())
    again = decode_record(msgspec.json.encode(record))
    assert record.health == again.health
