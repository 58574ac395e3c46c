"""Events: golden v1 files keep decoding, and bad input gets a typed error naming the field."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate import CodecError, VersionError
from callstate.journal import events as ev
from callstate.journal.snapshot import SNAPSHOT_VERSION, decode_state, encode_snapshot, encode_state
from callstate.journal.state import SessionState

GOLDEN = Path(__file__).parent / "golden"

#: Every tag of stored format version 1. A tag may be added later, never removed.
V1_TAGS = [
    "session.started",
    "session.resumed",
    "session.ended",
    "session.expired",
    "user.partial",
    "user.turn",
    "agent.started",
    "agent.progress",
    "agent.finished",
    "agent.interrupted",
    "tool.requested",
    "tool.started",
    "tool.progress",
    "tool.succeeded",
    "tool.failed",
    "tool.cancelled",
    "tool.in_doubt",
    "tool.delivery",
    "userdata.patch",
    "link.lost",
    "link.restored",
    "link.outbox_dropped",
    "handoff.offered",
    "handoff.accepted",
    "handoff.reclaimed",
]


def _load_make_golden() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _load_make_golden()


def _tag(cls: type[Any]) -> str:
    return str(cls.__struct_config__.tag)


def _golden_lines() -> list[bytes]:
    return (GOLDEN / "events_v1.jsonl").read_bytes().splitlines()


# -- golden files ---------------------------------------------------------------------


def test_golden_events_decode_to_the_expected_structs() -> None:
    """Every line of events_v1.jsonl decodes to exactly the event it was written from."""
    assert make_golden.golden_events() == [ev.decode_event(line) for line in _golden_lines()]


def test_golden_events_cover_every_v1_type_once() -> None:
    """events_v1.jsonl holds one line per v1 tag, and every v1 tag is still decodable."""
    assert V1_TAGS == [json.loads(line)["type"] for line in _golden_lines()]
    known = {_tag(cls) for cls in ev.EVENT_TYPES}
    assert [] == [tag for tag in V1_TAGS if tag not in known]


def test_golden_events_set_every_field_away_from_its_default() -> None:
    """Each golden line sets every field of its type (as of v1) to a non-default value."""
    by_tag = {_tag(cls): cls for cls in ev.EVENT_TYPES}
    defaults_kept = []
    for line in _golden_lines():
        raw = json.loads(line)
        cls = by_tag[raw["type"]]
        event = ev.decode_event(line)
        for f in msgspec.structs.fields(cls):
            if f.name == "v" or f.name not in raw:
                continue  # v is 1 by definition; fields added after v1 are not in the file
            default = (
                f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
            )
            if getattr(event, f.name) == default:
                defaults_kept.append(f"{raw['type']}.{f.name}")
    assert [] == defaults_kept
    assert all(json.loads(line)["v"] == 1 for line in _golden_lines())


def test_golden_context_delivered_event_decodes_to_the_expected_struct() -> None:
    """events_v1_context_delivered.jsonl decodes to exactly the event it was written from."""
    lines = (GOLDEN / "events_v1_context_delivered.jsonl").read_bytes().splitlines()
    assert make_golden.context_delivered_events() == [ev.decode_event(line) for line in lines]
    assert [("tool.context_delivered", 1)] == [
        (json.loads(line)["type"], json.loads(line)["v"]) for line in lines
    ]


def test_golden_snapshot_decodes_to_the_expected_state() -> None:
    """snapshot_v1.json decodes to exactly the state it was written from."""
    assert make_golden.golden_state() == decode_state((GOLDEN / "snapshot_v1.json").read_bytes())


def test_golden_snapshot_is_version_one() -> None:
    """The golden snapshot carries format version 1."""
    assert 1 == json.loads((GOLDEN / "snapshot_v1.json").read_bytes())["v"]


def test_golden_snapshot_v2_decodes_to_the_expected_state() -> None:
    """snapshot_v2.msgpack (format 2) decodes to exactly the state it was written from."""
    data = (GOLDEN / "snapshot_v2.msgpack").read_bytes()
    assert 2 == msgspec.msgpack.decode(data)[0]
    assert make_golden.golden_state() == decode_state(data)


def test_snapshots_are_written_in_the_current_format() -> None:
    """encode_snapshot writes format SNAPSHOT_VERSION, and it decodes back exactly."""
    state = make_golden.golden_state()
    data = encode_snapshot(state)
    assert SNAPSHOT_VERSION == msgspec.msgpack.decode(data)[0]
    assert state == decode_state(data)


def test_newer_msgpack_snapshot_raises_version_error() -> None:
    """A format-2 snapshot whose ``v`` is above the current version raises VersionError."""
    raw = msgspec.msgpack.decode((GOLDEN / "snapshot_v2.msgpack").read_bytes())
    raw[0] = SNAPSHOT_VERSION + 1
    with pytest.raises(VersionError, match="newer"):
        decode_state(msgspec.msgpack.encode(raw))
    raw[1] = {"changed": "shape"}
    with pytest.raises(VersionError, match="newer"):
        decode_state(msgspec.msgpack.encode(raw))


def test_snapshot_payloads_restore_as_the_json_journal_gives_them() -> None:
    """App payloads in a snapshot come back as a fold of the JSON journal gives them."""
    state = make_golden.golden_state()
    state.userdata = {"slots": {1: "9am"}, "when": (1, 2)}
    assert {"slots": {"1": "9am"}, "when": [1, 2]} == decode_state(encode_snapshot(state)).userdata


def test_golden_outbox_events_decode_with_every_field_set() -> None:
    """events_v1_outbox.jsonl (the journaled outbox, the resume channel) decodes to
    exactly its events, each field away from its default."""
    lines = (GOLDEN / "events_v1_outbox.jsonl").read_bytes().splitlines()
    events = [ev.decode_event(line) for line in lines]
    assert make_golden.golden_outbox_events() == events
    kept = [
        f"{_tag(type(e))}.{f.name}"
        for e in events
        for f in msgspec.structs.fields(type(e))
        # `cause` came later: events_v1_causes.jsonl sets it
        if f.name not in ("v", "message", "utterance_id", "text", "cause")
        and getattr(e, f.name) == f.default
    ]
    assert [] == kept


def test_golden_cause_events_decode_with_every_field_set() -> None:
    """events_v1_causes.jsonl (why an owner lost a session, why nobody resumed it)
    decodes to exactly its events, each field away from its default."""
    lines = (GOLDEN / "events_v1_causes.jsonl").read_bytes().splitlines()
    events = [ev.decode_event(line) for line in lines]
    assert make_golden.golden_cause_events() == events
    kept = [
        f"{_tag(type(e))}.{f.name}"
        for e in events
        for f in msgspec.structs.fields(type(e))
        if f.name != "v" and getattr(e, f.name) == f.default
    ]
    assert [] == kept


def test_events_written_before_causes_decode_with_no_cause() -> None:
    """A resume and an expiry from events_v1.jsonl (before causes) decode with cause ""."""
    events = [
        ev.decode_event(line) for line in (GOLDEN / "events_v1.jsonl").read_bytes().splitlines()
    ]
    causes = [e.cause for e in events if isinstance(e, ev.SessionResumed | ev.SessionExpiredEvent)]
    assert ["", ""] == causes


def test_golden_writer_refuses_to_overwrite(capsys: pytest.CaptureFixture[str]) -> None:
    """make_golden.py exits non-zero and leaves the frozen files untouched when they exist."""
    before = _golden_lines()
    assert 1 == make_golden.main()
    assert "refusing to overwrite" in capsys.readouterr().err
    assert before == _golden_lines()


# -- the union -------------------------------------------------------------------------


def test_issue_event_kinds_all_exist() -> None:
    """The union covers every kind of event the journal must record."""
    required = {
        "session started": "session.started",
        "session ended": "session.ended",
        "session resumed": "session.resumed",
        "session expired": "session.expired",
        "user partial turn": "user.partial",
        "user final turn": "user.turn",
        "agent utterance started": "agent.started",
        "agent utterance progress": "agent.progress",
        "agent utterance finished": "agent.finished",
        "interruption": "agent.interrupted",
        "tool call requested": "tool.requested",
        "tool call started": "tool.started",
        "tool call progress": "tool.progress",
        "tool call succeeded": "tool.succeeded",
        "tool call failed": "tool.failed",
        "tool call cancelled": "tool.cancelled",
        "tool call in doubt": "tool.in_doubt",
        "tool delivery decision": "tool.delivery",
        "userdata patch": "userdata.patch",
        "link lost": "link.lost",
        "link restored": "link.restored",
        "handoff offered": "handoff.offered",
        "handoff accepted": "handoff.accepted",
    }
    known = {_tag(cls) for cls in ev.EVENT_TYPES}
    assert {} == {kind: tag for kind, tag in required.items() if tag not in known}
    heard = set(ev.Interrupted.__struct_fields__)
    assert {"heard_text", "unspoken_text"} <= heard


def test_tags_are_dotted_and_unique() -> None:
    """Every event type has its own dotted lower-case tag."""
    tags = [_tag(cls) for cls in ev.EVENT_TYPES]
    assert len(tags) == len(set(tags))
    assert [] == [t for t in tags if not re.fullmatch(r"[a-z_]+\.[a-z_]+", t)]


def test_events_are_frozen() -> None:
    """An event cannot be changed after it is made."""
    event = ev.UserTurn(seq=1, text="hi")
    with pytest.raises(AttributeError):
        event.text = "changed"  # type: ignore[misc]


def test_every_encoded_event_carries_its_version() -> None:
    """Every encoded event, of every type, has ``v`` set to the current format version."""
    for event in make_golden.golden_events():
        assert ev.FORMAT_VERSION == json.loads(ev.encode_event(event))["v"]


def test_event_lists_round_trip() -> None:
    """encode_events/decode_events round-trip a list of every type, in order."""
    events = make_golden.golden_events()
    assert events == ev.decode_events(ev.encode_events(events))


# -- newer versions --------------------------------------------------------------------


def _bump(line: bytes, **changes: Any) -> bytes:
    raw = json.loads(line)
    raw.update(changes)
    return json.dumps(raw).encode()


def test_newer_event_version_raises_version_error() -> None:
    """An event with ``v`` above the current version raises VersionError naming both."""
    line = _bump(_golden_lines()[5], v=ev.SEALED_VERSION + 1)
    with pytest.raises(VersionError, match=r"version 3 at `\$\.v` is newer.*\(2\)"):
        ev.decode_event(line)


def test_newer_event_with_unknown_tag_or_field_type_is_a_version_error() -> None:
    """A newer record this version cannot even parse is a VersionError, not garbage."""
    new_tag = _bump(_golden_lines()[5], type="user.whisper", v=3)
    retyped = _bump(_golden_lines()[5], text={"rich": "text"}, v=3)
    for line in (new_tag, retyped):
        with pytest.raises(VersionError, match="newer"):
            ev.decode_event(line)
    listed = b"[" + _golden_lines()[4] + b"," + new_tag + b"]"
    with pytest.raises(VersionError):
        ev.decode_events(listed)


def test_newer_snapshot_version_raises_version_error() -> None:
    """A snapshot with ``v`` above the current version raises VersionError."""
    raw = json.loads((GOLDEN / "snapshot_v1.json").read_bytes())
    raw["v"] = SNAPSHOT_VERSION + 1
    with pytest.raises(VersionError, match=r"`\$\.v`"):
        decode_state(json.dumps(raw))
    raw["items"] = {"changed": "shape"}
    with pytest.raises(VersionError):
        decode_state(json.dumps(raw))


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (b'{"type":"user.turn","seq":"7","text":"hi"}', "`$.seq`"),
        (b'{"type":"user.turn","seq":7,"at":"noon","text":"hi"}', "`$.at`"),
        (b'{"type":"user.turn","seq":7,"text":42}', "`$.text`"),
        (b'{"type":"agent.interrupted","overtaken":["c1",2]}', "`$.overtaken[1]`"),
        (b'{"type":"tool.requested","call_id":"c1","name":"t","effect":"delete"}', "`$.effect`"),
        (b'{"type":"tool.requested","call_id":"c1"}', "`name`"),
        (b'{"type":"user.shout","text":"hi"}', "`$.type`"),
        (b'{"text":"hi"}', "`type`"),
        (b'["user.turn"]', "Expected `object`, got `array`"),
    ],
)
def test_wrong_typed_event_raises_codec_error_naming_the_field(data: bytes, path: str) -> None:
    """An ill-typed or incomplete event raises CodecError whose message names the field."""
    with pytest.raises(CodecError) as exc:
        ev.decode_event(data)
    assert not isinstance(exc.value, VersionError)
    assert path in str(exc.value)


def test_wrong_typed_event_in_a_list_names_its_index() -> None:
    """In an event list, the CodecError names the element's index and field."""
    data = b'[{"type":"user.turn","seq":1,"text":"a"},{"type":"user.turn","seq":"2","text":"b"}]'
    with pytest.raises(CodecError, match=r"`\$\[1\]\.seq`"):
        ev.decode_events(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\xff\xfe", b"not json", b'{"type":"user.turn"', b"null", b"12", "🎧".encode()],
)
def test_garbage_raises_codec_error(data: bytes) -> None:
    """Bytes that are not an event at all raise CodecError."""
    with pytest.raises(CodecError, match="undecodable event"):
        ev.decode_event(data)


def test_wrong_typed_snapshot_names_the_field() -> None:
    """A snapshot with a wrong-typed nested field raises CodecError naming its path."""
    raw = json.loads((GOLDEN / "snapshot_v1.json").read_bytes())
    raw["items"][1]["done"] = "yes"
    with pytest.raises(CodecError, match=r"`\$\.items\[1\]\.done`"):
        decode_state(json.dumps(raw))


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_any_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    """For arbitrary bytes the decoders return a record or raise CodecError, nothing else."""
    decoders: list[tuple[Any, Any]] = [
        (ev.decode_event, ev.EVENT_TYPES),
        (ev.decode_events, list),
        (decode_state, SessionState),
    ]
    for decode, kind in decoders:
        try:
            result = decode(data)
        except CodecError:
            continue
        assert isinstance(result, kind)


def test_check_event_refuses_an_ill_typed_value() -> None:
    """check_event names the field and the value of an ill-typed event."""
    with pytest.raises(CodecError) as exc:
        ev.check_event(ev.UserTurn(seq=2, text=123))  # type: ignore[arg-type]
    message = str(exc.value)
    assert "`$.text`" in message
    assert "123" in message
    assert "user.turn" in message


def test_check_event_refuses_an_unencodable_value() -> None:
    """An event holding a value JSON cannot carry raises CodecError naming the field."""
    with pytest.raises(CodecError, match=r"`\$\.set`"):
        ev.check_event(ev.UserdataPatch(seq=2, set={"when": object()}))
    with pytest.raises(CodecError, match=r"`\$\.set`"):
        ev.encode_events([ev.UserdataPatch(seq=2, set={"when": object()})])


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (ev.UserTurn(seq=2, at=1.0, text=123), "`$.text`"),  # type: ignore[arg-type]
        (ev.UserPartial(seq=2, at=1.0, text="lone \ud800"), "`$.text`"),
        (ev.AgentStarted(seq=2, at=1.0, utterance_id=7, text="hi"), "`$.utterance_id`"),  # type: ignore[arg-type]
        (ev.AgentProgress(seq=2, at=1.0, utterance_id="u1", spoken_text=None), "`$.spoken_text`"),  # type: ignore[arg-type]
        (ev.AgentProgress(seq=2, at=1.0, utterance_id="u1", spoken_text="", text=3), "`$.text`"),  # type: ignore[arg-type]
        (ev.AgentFinished(seq=2, at=1.0, utterance_id="u1", text=["t"]), "`$.text`"),  # type: ignore[arg-type]
        (ev.UserTurn(seq=2, at=float("nan"), text="hi"), "`$.at`"),
        (ev.UserTurn(seq="2", at=1.0, text="hi"), "`$.seq`"),  # type: ignore[arg-type]
    ],
)
def test_check_recorded_refuses_what_check_event_refuses(event: Any, field: str) -> None:
    """check_recorded's cheap path for speech events refuses every value check_event does."""
    with pytest.raises(CodecError) as exc:
        ev.check_event(event)
    assert field in str(exc.value)
    with pytest.raises(CodecError) as exc2:
        ev.check_recorded(event)
    assert str(exc.value) == str(exc2.value)


@given(st.text(), st.one_of(st.none(), st.text()))
@settings(max_examples=200)
def test_check_recorded_accepts_what_check_event_accepts(text: str, extra: str | None) -> None:
    """Any speech event check_event accepts, check_recorded accepts too."""
    for event in (
        ev.UserTurn(seq=3, at=2.5, text=text),
        ev.AgentProgress(seq=3, at=2.5, utterance_id=text, spoken_text=text, text=extra),
        ev.AgentFinished(seq=3, at=2.5, utterance_id=text, text=extra),
    ):
        try:
            ev.check_event(event)
        except CodecError:
            with pytest.raises(CodecError):
                ev.check_recorded(event)
        else:
            ev.check_recorded(event)


def test_check_event_returns_the_encoding_of_a_good_event() -> None:
    """A well-typed event passes check_event, which returns its stored encoding."""
    event = make_golden.golden_events()[10]
    assert ev.encode_event(event) == ev.check_event(event)


def test_snapshot_of_golden_state_round_trips() -> None:
    """encode_state/decode_state round-trip the golden state exactly."""
    state = make_golden.golden_state()
    assert state == decode_state(encode_state(state))
