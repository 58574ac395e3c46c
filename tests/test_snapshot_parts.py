"""Snapshot format 4: the older conversation and calls travel in parts, written once."""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate import Keeper
from callstate.errors import CallstateError, CodecError
from callstate.journal import events as ev
from callstate.journal.snapshot import (
    CALLS_PER_PART,
    ITEMS_PER_PART,
    StoredParts,
    decode_state,
    encode_parted,
    encode_snapshot,
)
from callstate.journal.state import SessionState, apply, fold
from callstate.storage.base import Batch
from callstate.storage.memory import MemoryStore
from callstate.testing import FakeClock
from test_state import CALL_IDS, UTTERANCES, journals

GOLDEN = Path(__file__).parent / "golden"


def _load(name: str) -> ModuleType:
    import sys

    sys.path.insert(0, str(GOLDEN))
    spec = importlib.util.spec_from_file_location(name, GOLDEN / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_parted_golden = _load("make_parted_golden")


def _filler() -> list[ev.Event]:
    """The calls and utterances random events refer to first (so they land in part 0),
    then enough turns and calls to fill two item parts and two call parts."""
    events: list[ev.Event] = [ev.SessionStarted(session_id="s", agent="a")]
    events += [ev.ToolRequested(call_id=c, name="t") for c in CALL_IDS]
    events += [ev.AgentStarted(utterance_id=u, text=f"say {u}") for u in UTTERANCES]
    events += [ev.UserTurn(text=f"turn {i}") for i in range(2 * ITEMS_PER_PART + 3)]
    events += [ev.ToolRequested(call_id=f"f{i}", name="t") for i in range(2 * CALLS_PER_PART)]
    return events


def _numbered(events: Sequence[ev.Event]) -> list[ev.Event]:
    return [msgspec.structs.replace(e, seq=i + 1) for i, e in enumerate(events)]


def _write(
    state: SessionState, stored: StoredParts, parts: dict[int, bytes]
) -> tuple[bytes, StoredParts]:
    head, written, after = encode_parted(state, None, stored)
    parts.update(written)
    return head, after


@given(events=journals(max_size=30), data=st.data())
@settings(max_examples=100, deadline=None)
def test_parts_written_as_a_call_goes_decode_to_the_state_at_each_snapshot(
    events: list[ev.Event], data: st.DataObject
) -> None:
    """Snapshots taken at any points of any journal, each writing only the parts it
    changed, decode (head + every part stored so far) to the fold at that point."""
    journal = _numbered(_filler() + events)
    cuts = sorted(data.draw(st.sets(st.integers(len(_filler()), len(journal)), max_size=4)))
    state, stored, parts = SessionState(), StoredParts(), {}
    done = 0
    for cut in cuts:
        for event in journal[done:cut]:
            apply(state, event)
        done = cut
        head, stored = _write(state, stored, parts)
        assert fold(journal[:cut]) == decode_state(head, None, parts)


def test_only_the_parts_that_changed_are_written_again() -> None:
    """Unchanged parts are not rewritten; a replaced item rewrites its item part, a call
    changed in place its call part, and nothing else."""
    state = fold(_numbered(_filler()))
    _, written, stored = encode_parted(state, None, StoredParts())
    assert [0, 1, 2, 3] == sorted(written)
    assert {} == encode_parted(state, None, stored)[1]
    state.items[ITEMS_PER_PART + 1] = msgspec.structs.replace(
        state.items[ITEMS_PER_PART + 1], text="changed"
    )
    state.calls[CALL_IDS[0]].status = "succeeded"
    _, written, stored = encode_parted(state, None, stored)
    assert [1, 2] == sorted(written)
    assert {} == encode_parted(state, None, stored)[1]


def test_a_new_epoch_writes_every_part_again() -> None:
    """Parts known stored by an earlier epoch's owner are not trusted at a newer one."""
    state = fold(_numbered(_filler()))
    _, _, stored = encode_parted(state, None, StoredParts())
    state.epoch += 1
    assert [0, 1, 2, 3] == sorted(encode_parted(state, None, stored)[1])


def test_golden_snapshot_v4_decodes_to_the_expected_state() -> None:
    """snapshot_v4.msgpack with its parts (format 4) decodes to exactly the state it was
    written from."""
    head = (GOLDEN / "snapshot_v4.msgpack").read_bytes()
    parts = msgspec.msgpack.decode((GOLDEN / "snapshot_v4_parts.msgpack").read_bytes())
    assert 4 == msgspec.msgpack.decode(head)[0]
    assert [0, 1, 2, 3] == sorted(parts)
    assert make_parted_golden.parted_state() == decode_state(head, None, parts)


def test_a_missing_or_short_part_is_a_codec_error() -> None:
    """A format-4 head whose part is missing, or holds too few items, raises CodecError
    naming the part."""
    head = (GOLDEN / "snapshot_v4.msgpack").read_bytes()
    parts = msgspec.msgpack.decode((GOLDEN / "snapshot_v4_parts.msgpack").read_bytes())
    with pytest.raises(CodecError, match="snapshot part 2 is missing"):
        decode_state(head, None, {k: v for k, v in parts.items() if k != 2})
    short = msgspec.msgpack.encode(msgspec.msgpack.decode(parts[0])[:-1])
    with pytest.raises(CodecError, match="snapshot part 0 holds"):
        decode_state(head, None, {**parts, 0: short})


def _long_call() -> SessionState:
    """A state of 400 tool calls with dict arguments and results, and 1,600 items."""
    events: list[ev.Event] = [ev.SessionStarted(session_id="s", agent="a")]
    for i in range(400):
        events.append(ev.UserTurn(text=f"move booking {i} to eight tonight, please"))
        events.append(ev.AgentStarted(utterance_id=f"u{i}", text="Sure, one moment."))
        events.append(ev.AgentFinished(utterance_id=f"u{i}"))
        events.append(ev.ToolRequested(call_id=f"c{i}", name="move", args={"id": f"B-{i}"}))
        events.append(ev.ToolSucceeded(call_id=f"c{i}", result={"id": f"B-{i}", "at": [8, 0]}))
    return fold(_numbered(events))


def test_decoding_a_long_snapshot_runs_the_collector_at_most_once() -> None:
    """The thousands of containers a long call's snapshot decodes to set off at most one
    run of the cyclic collector (the one deferred to the end), and it is on afterwards."""
    state = _long_call()
    head, parts, _ = encode_parted(state, None, StoredParts())
    runs: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(phase)

    gc.callbacks.append(count)
    try:
        assert 0 == len(runs)
        decoded = decode_state(head, None, parts)
        during = len(runs)
        gc.collect()
    finally:
        gc.callbacks.remove(count)
    assert (True, state) == (during <= 1, decoded), during
    assert [True, during + 1] == [gc.isenabled(), len(runs)]


def test_a_failed_decode_turns_the_collector_back_on_and_leaves_it_off_if_it_was() -> None:
    """A snapshot that does not decode leaves the collector on; one off stays off."""
    head, parts, _ = encode_parted(_long_call(), None, StoredParts())
    with pytest.raises(CodecError, match="snapshot part 0 is missing"):
        decode_state(head, None, {k: v for k, v in parts.items() if k != 0})
    assert gc.isenabled()
    gc.disable()
    try:
        decode_state(head, None, parts)
        assert not gc.isenabled()
    finally:
        gc.enable()


class _Counting(MemoryStore):
    """A memory store that counts the snapshot bytes each append writes."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshot_bytes: list[int] = []

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        for b in batches:
            if b.snapshot is not None:
                self.snapshot_bytes.append(
                    len(b.snapshot) + sum(map(len, b.snapshot_parts.values()))
                )
        return await super().append(batches)


async def test_snapshot_writes_stay_flat_as_the_call_grows() -> None:
    """Over a 600-turn call, no snapshot of its second half writes more than 1.2x the
    largest of its first half, and a resume rebuilds exactly the live state."""
    store = _Counting()
    reply = "Sure, I can move that booking to eight tonight; anything else I can do? " * 2
    async with Keeper(store, clock=FakeClock()) as keeper:
        s = await keeper.start(agent="a")
        for turn in range(600):
            s.user_said(f"turn {turn}: could you move my booking to eight tonight please")
            s.agent_finished(s.agent_started(reply))
            await s.flush()
        written = store.snapshot_bytes
        half = len(written) // 2
        assert max(written[half:]) <= 1.2 * max(written[:half])
        live = s.state
        assert max(written) * 5 < len(encode_snapshot(live))  # a whole snapshot, by comparison
        await s.close()
        async with Keeper(store, clock=FakeClock()) as second:
            resumed = await second.resume(s.id)
            assert live.items == resumed.state.items
            assert live.calls == resumed.state.calls


class _Parts(MemoryStore):
    """A memory store that notes which snapshot parts each snapshot writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[list[int]] = []

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        for b in batches:
            if b.snapshot is not None:
                self.written.append(sorted(b.snapshot_parts))
        return await super().append(batches)


@pytest.mark.parametrize("resume_by", ["id", "token"])
async def test_the_first_snapshot_after_a_resume_writes_only_what_changed(resume_by: str) -> None:
    """An owner that resumes a long call knows the parts it read are stored: its first
    snapshot writes the parts its own turns changed, not the whole call again, and the
    call still restores exactly."""
    store = _Parts()
    async with Keeper(store, clock=FakeClock(), secret=b"k" * 32) as keeper:
        s = await keeper.start(agent="a")
        for turn in range(150):
            s.user_said(f"turn {turn}: could you move my booking to eight tonight please")
            s.agent_finished(s.agent_started("Sure, one moment."))
            if turn % 5 == 0:
                await s.run_tool("lookup", {"turn": turn}, call_id=f"c{turn}")
            await s.flush()
        token = s.resume_token()
        await s.close()
    stored = set().union(*store.written)
    assert len(stored) >= 12  # 330 items, 30 calls: parts enough to tell "all" from "some"
    store.written.clear()
    async with Keeper(store, clock=FakeClock(), secret=b"k" * 32) as second:
        if resume_by == "id":
            resumed = await second.resume(s.id)
        else:
            resumed = await second.resume(token)
        for turn in range(60):
            resumed.user_said(f"again {turn}: and one more thing about the booking")
            resumed.agent_finished(resumed.agent_started("Of course."))
            await resumed.flush()
        live = resumed.state
        await resumed.close()
        assert store.written
        first = store.written[0]
        assert len(first) <= 3, first  # the parts the new turns filled, at most
        async with Keeper(store, clock=FakeClock(), secret=b"k" * 32) as third:
            again = await third.resume(s.id)
            assert live.items == again.state.items
            assert live.calls == again.state.calls
