"""The archive: exactly one insert-only record per call, with the right outcome."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

import callstate
from callstate.archive.records import build_record, decode_record, encode_record, superseded_records
from callstate.errors import CodecError, VersionError
from callstate.journal.state import fold
from callstate.testing import FakeClock

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_archive_golden  # noqa: E402

CALLER = "+15551234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


@pytest.fixture
async def keeper(url: str, clock: FakeClock) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(url, secret=b"s" * 32, clock=clock) as k:
        yield k


async def test_an_ended_call_writes_one_completed_record(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """Ending a call archives its transcript, timings and outcome under session:epoch."""
    s = await keeper.start(caller=CALLER, agent="triage")
    s.user_said("hello")
    u = s.agent_started("hi, how can I help")
    s.agent_finished(u)
    clock.advance(42)
    await s.end(reason="caller_hangup")
    (record,) = await keeper.archive.list(caller=CALLER)
    assert (f"{s.id}:1", "completed", "caller_hangup", CALLER) == (
        record.record_id,
        record.outcome,
        record.end_reason,
        record.caller,
    )
    assert ["hello", "hi, how can I help"] == [i.text for i in record.transcript]
    assert 42.0 == record.timings.duration_s
    assert record == await keeper.archive.get(record.record_id)


async def test_two_concurrent_calls_from_one_caller_get_two_records(
    keeper: callstate.Keeper,
) -> None:
    """Two calls from the same caller at the same moment never overwrite each other."""

    async def call(text: str) -> str:
        s = await keeper.start(caller=CALLER)
        s.user_said(text)
        await s.end(reason="caller_hangup")
        return s.id

    ids = await asyncio.gather(call("first call"), call("second call"))
    records = await keeper.archive.list(caller=CALLER)
    assert sorted(f"{i}:1" for i in ids) == sorted(r.record_id for r in records)
    assert ["first call", "second call"] == sorted(r.transcript[0].text for r in records)


async def test_a_resumed_call_gets_superseded_then_recovered(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """A drop then resume closes the first run as superseded; the continuation that
    ends is recovered, and each record holds only its own part of the conversation."""
    s = await keeper.start(caller=CALLER)
    s.user_said("before the drop")
    s.connection_lost()
    await s.flush()
    clock.advance(5)
    s2 = await keeper.resume(s.resume_token())
    s2.user_said("after the drop")
    await s2.end(reason="caller_hangup")
    records = {r.record_id: r for r in await keeper.archive.list(session_id=s.id)}
    first, second = records[f"{s.id}:1"], records[f"{s.id}:2"]
    assert ("superseded", "recovered") == (first.outcome, second.outcome)
    assert (["before the drop"], ["after the drop"]) == (
        [i.text for i in first.transcript],
        [i.text for i in second.transcript],
    )
    assert (5.0, "session.resumed") == (second.timings.gap_s, second.recovery[0].kind)


async def test_ringing_back_after_a_hang_up_is_a_new_call(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """A resume after the call ended writes no superseded record; the continuation
    gets its own record when it ends."""
    s = await keeper.start(caller=CALLER)
    await s.end(reason="caller_hangup")
    clock.advance(30)
    back = await keeper.resume_caller(CALLER)
    assert back is not None
    await back.end(reason="caller_hangup")
    outcomes = sorted((r.record_id, r.outcome) for r in await keeper.archive.list())
    assert [(f"{s.id}:1", "completed"), (f"{s.id}:2", "recovered")] == outcomes


async def test_a_failed_call_is_archived_as_failed(keeper: callstate.Keeper) -> None:
    """session.fail() ends the call with outcome failed."""
    s = await keeper.start()
    await s.fail(reason="tts provider down")
    (record,) = await keeper.archive.list(session_id=s.id)
    assert ("failed", "tts provider down") == (record.outcome, record.end_reason)


async def test_records_are_never_overwritten(keeper: callstate.Keeper) -> None:
    """Inserting a record again (a retry) is refused and the original stays."""
    s = await keeper.start()
    s.user_said("original")
    await s.end()
    (record,) = await keeper.archive.list(session_id=s.id)
    forged = msgspec.structs.replace(record, outcome="failed", transcript=[])
    assert not await keeper.archive.insert(forged)
    assert record == await keeper.archive.get(record.record_id)


async def test_archive_survives_the_purge_of_resume_state(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """After expiry purges the journal the call's record is still there."""
    s = await keeper.start()
    await s.end()
    clock.advance(601)
    await keeper.sweep()
    assert await keeper.store.get(s.id) is None
    assert 1 == len(await keeper.archive.list(session_id=s.id))


async def test_export_writes_one_json_file_per_call(
    keeper: callstate.Keeper, tmp_path: Path
) -> None:
    """export(DIR) writes one decodable JSON file per record."""
    for _ in range(3):
        await (await keeper.start()).end()
    paths = await keeper.archive.export(tmp_path / "out")
    assert 3 == len(paths)
    records = [decode_record(p.read_bytes()) for p in paths]
    assert sorted(r.record_id for r in await keeper.archive.list()) == sorted(
        r.record_id for r in records
    )


async def test_takeover_record_carries_the_tool_ledger_and_recovery(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """The superseded record lists the run's link events and is closed at the takeover."""
    s = await keeper.start()
    s.connection_lost()
    s.connection_restored()
    await s.flush()
    clock.advance(7)
    s2 = await keeper.resume(s.id)
    assert [] == await keeper.archive.list(session_id=s.id)  # a takeover writes nothing
    await s2.end()
    record = await keeper.archive.get(f"{s.id}:1")
    assert record is not None
    assert ("superseded", ["link.lost", "link.restored"]) == (
        record.outcome,
        [e.kind for e in record.recovery],
    )
    assert s2.state.run_started_at == record.timings.closed_at


async def test_superseded_runs_are_archived_when_the_session_expires(
    url: str, clock: FakeClock
) -> None:
    """After a takeover whose new owner dies, expiry archives both runs: the first as
    superseded, the second as abandoned."""
    async with callstate.Keeper(url, clock=clock, owner="a") as a:
        s = await a.start()
        s.user_said("first run")
        await s.flush()
        async with callstate.Keeper(url, clock=clock, owner="b") as b:
            taken = await b.resume(s.id, via="takeover")
            taken.user_said("second run")
            await taken.flush()
            b.host.handles.clear()  # b dies without closing: nothing more reaches the store
        clock.advance(601)
        await a.sweep()
        records = sorted(await a.archive.list(session_id=s.id), key=lambda r: r.epoch)
    assert [("superseded", ["first run"]), ("abandoned", ["second run"])] == [
        (r.outcome, [i.text for i in r.transcript]) for r in records
    ]


def test_superseded_records_are_rebuilt_deterministically() -> None:
    """Rebuilding from the journal twice gives the same records, closed at the takeover."""
    events = make_archive_golden.golden_events()
    first = superseded_records(events, before_seq=len(events) + 1)
    again = superseded_records(events, before_seq=len(events) + 1)
    assert first == again
    ((rec),) = first
    assert ("golden-session:1", 1_700_000_011.0, 4) == (
        rec.record_id,
        rec.timings.closed_at,
        rec.last_seq,
    )


async def test_an_accepted_handoff_supersedes_the_source_run(keeper: callstate.Keeper) -> None:
    """After a handoff, the source agent's run is archived as superseded and the
    target's as completed, each with its own part of the conversation."""
    s = await keeper.start(caller=CALLER, agent="triage")
    s.user_said("I have a billing question")
    pkg = await s.handoff(to="billing", reason="billing question")
    target = await keeper.accept(pkg.to_bytes())
    target.user_said("I was charged twice")
    await target.end(reason="caller_hangup")
    records = sorted(await keeper.archive.list(session_id=s.id), key=lambda r: r.epoch)
    assert [
        ("superseded", "triage", ["I have a billing question"]),
        ("completed", "billing", ["I was charged twice"]),
    ] == [(r.outcome, r.agent, [i.text for i in r.transcript]) for r in records]
    assert ["handoff.offered"] == [e.kind for e in records[0].recovery]


def test_golden_v1_record_still_decodes() -> None:
    """archive_v1.json decodes to the record v1 wrote, and round-trips unchanged."""
    raw = (GOLDEN / "archive_v1.json").read_bytes()
    record = decode_record(raw)
    assert (1, "golden-session:2", "recovered", "resume", 8.0, 2.0) == (
        record.v,
        record.record_id,
        record.outcome,
        record.via,
        record.timings.gap_s,
        record.timings.link_down_s,
    )
    assert [
        "session.resumed",
        "interrupt.reconciled",
        "result.held",
        "result.announced",
        "link.lost",
        "link.restored",
    ] == [e.kind for e in record.recovery]
    assert ("move_booking", "succeeded", "announced") == (
        record.tools[0].name,
        record.tools[0].status,
        record.tools[0].delivery,
    )
    assert record == decode_record(encode_record(record))


def test_newer_or_garbage_records_get_typed_errors() -> None:
    """A record from a newer version is a VersionError; garbage names the field."""
    raw = json.loads((GOLDEN / "archive_v1.json").read_bytes())
    with pytest.raises(VersionError, match="version 3"):
        decode_record(json.dumps({**raw, "v": 3}))
    with pytest.raises(CodecError, match=r"\$\.epoch"):
        decode_record(json.dumps({**raw, "epoch": "two"}))


def test_build_record_is_pure() -> None:
    """Building a record leaves the state as it was."""
    state = fold(make_archive_golden.golden_events())
    before = msgspec.json.encode(state)
    build_record(state, outcome="recovered", closed_at=0.0)
    assert before == msgspec.json.encode(state)
