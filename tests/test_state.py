"""SessionState is a pure fold: property tests of the fold, the snapshot and the event codec."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate.journal import events as ev
from callstate.journal.snapshot import decode_state, encode_snapshot, encode_state
from callstate.journal.state import SessionState, apply, fold
from callstate.keeper import restore_state
from callstate.storage.base import Loaded, SessionRecord

# Small pools, so generated events refer to the same calls, utterances and keys.
CALL_IDS = ["c1", "c2", "c3"]
UTTERANCES = ["u1", "u2"]
PACKAGES = ["p1", "p2"]
KEYS = ["a", "b", "c"]

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or infinity
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)

BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "call_id": st.sampled_from(CALL_IDS),
    "utterance_id": st.sampled_from(UTTERANCES),
    "package_id": st.sampled_from(PACKAGES),
    "overtaken": st.lists(st.sampled_from(CALL_IDS), max_size=3),
    "unset": st.lists(st.sampled_from(KEYS), max_size=3),
    "set": st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=3),
    "personal": st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
    "sealed": st.none(),  # recorded events are plain; sealing happens on the way to a store
}


def for_type(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy for any value of the msgspec type ``t`` that JSON can carry."""
    match t:
        case mi.StrType():
            return st.text(max_size=12)
        case mi.IntType():
            return st.integers(min_value=-(2**31), max_value=2**31)
        case mi.FloatType():
            return st.floats(allow_nan=False, allow_infinity=False)
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.LiteralType(values=values):
            return st.sampled_from(values)
        case mi.UnionType(types=types):
            return st.one_of(*(for_type(x) for x in types))
        case mi.ListType(item_type=item):
            return st.lists(for_type(item), max_size=3)
        case mi.DictType(key_type=key, value_type=value):
            return st.dictionaries(for_type(key), for_type(value), max_size=3)
        case mi.VarTupleType(item_type=item):
            return st.lists(for_type(item), max_size=3).map(tuple)
        case mi.StructType(cls=cls, fields=fields):
            return st.builds(cls, **{f.name: for_type(f.type) for f in fields})
        case mi.AnyType():
            return JSON_VALUES
    msg = f"no strategy for field type {t!r}: teach for_type about it"
    raise TypeError(msg)


def event_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Events of type ``cls`` with every field drawn (``seq`` is set by the sequence)."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in info.fields:
        if f.name in ("seq", "v"):
            continue
        if f.name not in BY_NAME:
            strategy = for_type(f.type)
        elif isinstance(f.type, mi.UnionType):
            strategy = BY_NAME[f.name] | st.none()  # an optional reference may be absent
        else:
            strategy = BY_NAME[f.name]
        fields[f.name] = strategy
    return st.builds(cls, **fields)


#: One strategy per event type; built from ``EVENT_TYPES`` so a new type is never skipped.
EVENT_STRATEGIES = {cls: event_strategy(cls) for cls in ev.EVENT_TYPES}


@st.composite
def journals(draw: st.DrawFn, max_size: int = 40) -> list[ev.Event]:
    """A journal: events of any types, with gap-free seq from 1."""
    events = draw(st.lists(st.one_of(*EVENT_STRATEGIES.values()), max_size=max_size))
    return [msgspec.structs.replace(e, seq=i + 1) for i, e in enumerate(events)]


def test_strategies_cover_every_event_type() -> None:
    """There is an event strategy for exactly the types of the Event union."""
    assert set(ev.Event.__args__) == set(EVENT_STRATEGIES)
    assert len(ev.EVENT_TYPES) == len(EVENT_STRATEGIES)


@pytest.mark.parametrize("cls", ev.EVENT_TYPES, ids=lambda c: c.__struct_config__.tag)
@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_every_event_type_round_trips_through_the_codec(
    cls: type[Any], data: st.DataObject
) -> None:
    """decode_event(encode_event(e)) == e for every event type and any field values."""
    event = data.draw(EVENT_STRATEGIES[cls])
    assert cls is type(event)
    assert event == ev.decode_event(ev.encode_event(event))
    assert ev.encode_event(event) == ev.check_event(event)


@given(events=journals(), data=st.data())
@settings(max_examples=200, deadline=None)
def test_snapshot_of_any_prefix_then_tail_equals_folding_everything(
    events: list[ev.Event], data: st.DataObject
) -> None:
    """For any journal and split point: fold(tail, decode(encode(fold(prefix)))) == fold(all)."""
    k = data.draw(st.integers(min_value=0, max_value=len(events)))
    snapshot = decode_state(encode_state(fold(events[:k])))
    assert fold(events) == fold(events[k:], snapshot)


@given(events=journals(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_restore_from_snapshot_and_tail_equals_folding_everything(
    events: list[ev.Event], data: st.DataObject
) -> None:
    """restore_state of a stored snapshot plus the encoded tail equals folding every event."""
    k = data.draw(st.integers(min_value=0, max_value=len(events)))
    loaded = Loaded(
        record=SessionRecord(session_id="s", epoch=1, seq=len(events), snapshot_seq=k),
        snapshot=encode_state(fold(events[:k])) if k else None,
        events=[ev.encode_event(e) for e in events[k:]],
    )
    assert fold(events) == restore_state(loaded)


@given(events=journals(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_fold_never_mutates_its_base_or_the_events(
    events: list[ev.Event], data: st.DataObject
) -> None:
    """fold(events, base) leaves ``base`` and the events exactly as they were."""
    k = data.draw(st.integers(min_value=0, max_value=len(events)))
    base = fold(events[:k])
    base_before = encode_state(base)
    events_before = [ev.encode_event(e) for e in events]
    fold(events[k:], base)
    fold(events[k:], base)
    assert base_before == encode_state(base)
    assert events_before == [ev.encode_event(e) for e in events]


@given(events=journals())
@settings(max_examples=100, deadline=None)
def test_apply_in_place_agrees_with_fold(events: list[ev.Event]) -> None:
    """Applying events one by one in place gives the same state as fold, ending at the last seq."""
    state = SessionState()
    for event in events:
        assert state is apply(state, event)
    assert fold(events) == state
    assert (events[-1].seq if events else 0) == state.seq


@given(events=journals())
@settings(max_examples=100, deadline=None)
def test_any_folded_state_round_trips_as_a_snapshot(events: list[ev.Event]) -> None:
    """Every state the fold can reach survives encode_state/decode_state unchanged, and
    the same through a snapshot (encode_snapshot)."""
    state = fold(events)
    assert state == decode_state(encode_state(state))
    assert state == decode_state(encode_snapshot(state))


def test_fold_of_a_conversation() -> None:
    """A worked example: a barge-in over a write keeps only the heard text and marks the call."""
    events: list[ev.Event] = [
        ev.SessionStarted(seq=1, at=10.0, session_id="s", agent="triage", caller="+1"),
        ev.UserTurn(seq=2, at=11.0, text="move my booking"),
        ev.AgentStarted(seq=3, at=12.0, utterance_id="u3", text="Sure, moving it now"),
        ev.ToolRequested(seq=4, at=12.5, call_id="c1", name="move", effect="write"),
        ev.ToolStarted(seq=5, at=12.6, call_id="c1", idempotency_key="k"),
        ev.AgentProgress(seq=6, at=13.0, utterance_id="u3", spoken_text="Sure,"),
        ev.Interrupted(
            seq=7,
            at=13.5,
            utterance_id="u3",
            heard_text="Sure,",
            unspoken_text=" moving it now",
            overtaken=["c1"],
        ),
        ev.ToolSucceeded(seq=8, at=14.0, call_id="c1", result={"ok": True}),
        ev.ToolDelivery(seq=9, at=14.1, call_id="c1", decision="held"),
    ]
    state = fold(events)
    assert ("s", "triage", 9, 1, 13.5) == (
        state.session_id,
        state.agent,
        state.seq,
        state.turn,
        state.last_interaction_at,
    )
    assert ["user", "assistant", "call"] == [i.kind for i in state.items]
    said = state.items[1]
    assert ("Sure,", "Sure,", " moving it now", True) == (
        said.text,
        said.spoken,
        said.unspoken,
        said.interrupted,
    )
    call = state.calls["c1"]
    assert ("succeeded", {"ok": True}, True, "held", 14.0) == (
        call.status,
        call.result,
        call.overtaken,
        call.delivery,
        call.finished_at,
    )
    assert [call] == state.owed
    assert [] == state.in_flight


@given(events=journals(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_apply_never_changes_an_item_in_place(events: list[ev.Event], data: st.DataObject) -> None:
    """Items already in ``state.items`` keep their values whatever is applied later, so
    a shallow copy of the list is the conversation as it stood (recovery plans rely on it)."""
    k = data.draw(st.integers(min_value=0, max_value=len(events)))
    state = fold(events[:k])
    kept = list(state.items)
    values = [msgspec.structs.asdict(item) for item in kept]
    for event in events[k:]:
        apply(state, event)
    assert values == [msgspec.structs.asdict(item) for item in kept]


def test_updates_replace_the_item() -> None:
    """Progress, finish and interruption of an utterance each put a new item in its place."""
    state = fold(
        [
            ev.SessionStarted(seq=1, session_id="s", agent="a"),
            ev.AgentStarted(seq=2, utterance_id="u1", text="one two three"),
        ]
    )
    seen = [state.items[0]]
    for event in (
        ev.AgentProgress(seq=3, utterance_id="u1", spoken_text="one"),
        ev.AgentFinished(seq=4, utterance_id="u1"),
        ev.Interrupted(seq=5, utterance_id="u1", heard_text="one two", unspoken_text="three"),
    ):
        apply(state, event)
        assert all(state.items[0] is not old for old in seen)
        seen.append(state.items[0])
    assert [(i.spoken, i.done, i.interrupted) for i in seen] == [
        ("", False, False),
        ("one", False, False),
        ("one two three", True, False),
        ("one two", True, True),
    ]
