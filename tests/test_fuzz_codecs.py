"""Fuzzing the decoders of stored bytes (events, event lists, snapshots, archive
records) and handoff packages: on every input only a CallstateError escapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import strategies as st

import callstate
from callstate.archive.records import build_record, decode_record, encode_record
from callstate.handoff.package import HandoffPackage, build_payload
from callstate.handoff.wire import b64, key_id, mac
from callstate.journal import events as ev
from callstate.journal.snapshot import decode_state, encode_snapshot, encode_state
from callstate.journal.state import fold
from fuzzing import EXAMPLES, any_char, fuzz, json_values, only_typed

SECRET = b"fuzz-codec-secret-0123456789abcdef"

EVENTS: list[ev.Event] = [
    ev.SessionStarted(seq=1, at=1.0, session_id="s1", agent="triage", userdata={"k": [1]}),
    ev.UserTurn(seq=2, at=2.0, text="move my booking"),
    ev.AgentStarted(seq=3, at=3.0, utterance_id="u1", text="one moment"),
    ev.ToolRequested(seq=4, at=4.0, call_id="c1", name="move", args={"id": "B1"}),
    ev.ToolStarted(seq=5, at=4.0, call_id="c1"),
    ev.ToolSucceeded(seq=6, at=5.0, call_id="c1", result={"ok": [True, {"n": 1}]}),
    ev.Interrupted(seq=7, at=6.0, utterance_id="u1", heard_text="one", unspoken_text=" moment"),
    ev.UserdataPatch(seq=8, at=7.0, set={"plan": "gold"}, unset=["k"]),
]
STATE = fold(EVENTS)
SAMPLES: list[bytes] = [
    *(ev.encode_event(e) for e in EVENTS),
    ev.encode_events(EVENTS),
    encode_snapshot(STATE),
    encode_state(STATE),
    encode_record(build_record(STATE, outcome="completed", closed_at=9.0)),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes | str:
    """A valid encoding with bytes flipped, inserted, removed, cut or wrapped in nesting;
    sometimes as a str with a lone surrogate spliced in."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        match draw(st.sampled_from(["flip", "insert", "delete", "truncate", "nest"])):
            case "flip" if data:
                data[i] = draw(st.integers(min_value=0, max_value=255))
            case "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
            case "delete":
                del data[i : i + draw(st.integers(min_value=1, max_value=16))]
            case "truncate":
                del data[i:]
            case _:
                n = draw(st.integers(min_value=1, max_value=200_000))
                data[i:i] = b"[" * n
    if draw(st.booleans()):
        return bytes(data)
    text = data.decode("utf-8", "replace")
    j = draw(st.integers(min_value=0, max_value=len(text)))
    return text[:j] + draw(st.text(any_char, max_size=3)) + text[j:]


def _deep_json(n: int) -> str:
    return '{"type":"tool.succeeded","call_id":"c","result":' + "[" * n + "]" * n + "}"


inputs = st.one_of(
    mutated(),
    st.binary(max_size=200),
    st.text(any_char, max_size=200),
    st.integers(min_value=0, max_value=300_000).map(_deep_json),
    json_values.map(lambda v: msgspec.json.encode(v) if _encodable(v) else b"null"),
)


def _encodable(value: Any) -> bool:
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return False
    return True


DECODERS: list[Callable[[Any], object]] = [
    ev.decode_event,
    ev.decode_events,
    decode_state,
    decode_record,
]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda f: f.__name__)
def test_decoders_raise_only_codec_errors(decode: Callable[[Any], object]) -> None:
    """On >= EXAMPLES fuzzed inputs a decoder returns a value or raises a CodecError."""
    decoded = [0]

    def check(data: bytes | str) -> None:
        try:
            decode(data)
        except callstate.CodecError:
            return
        decoded[0] += 1

    assert fuzz(inputs, check, EXAMPLES) >= EXAMPLES
    assert decoded[0] > 0  # the mutations of valid encodings do reach a decoded value


def _package() -> bytes:
    events: list[ev.Event] = [
        ev.SessionStarted(seq=1, at=1.0, session_id="s1", agent="a", userdata={"k": 1}),
        ev.HandoffOffered(seq=2, at=2.0, package_id="p1", to_agent="b"),
    ]
    payload = build_payload(fold(events), package_id="p1", to="b", created_at=2.0)
    return HandoffPackage(payload).to_bytes(SECRET)


VALID_PACKAGE = _package()
_HEAD, _, _REST = VALID_PACKAGE.partition(b',"payload":')
VALID_PAYLOAD = _REST[:-1]


def _signed(payload: bytes) -> bytes:
    """``payload`` in an envelope signed as the package format signs one."""
    kid = key_id(SECRET)
    sig = b64(mac(SECRET, kid, payload)).encode()
    return b'{"v":1,"alg":"HS256","kid":"%s","sig":"%s","payload":%s}' % (
        kid.encode(),
        sig,
        payload,
    )


@st.composite
def packages(draw: st.DrawFn) -> bytes | str:
    """Correctly signed packages whose userdata is nested up to 300,000 deep or holds
    hostile text, and text forms of the valid one with hostile characters spliced in."""
    if draw(st.booleans()):
        depth = draw(st.integers(min_value=0, max_value=300_000))
        leaf = msgspec.json.encode(draw(st.text(max_size=5)))
        value = b"[" * depth + leaf + b"]" * depth
        return _signed(VALID_PAYLOAD.replace(b'{"k":1}', b'{"deep":' + value + b"}"))
    text = VALID_PACKAGE.decode()
    i = draw(st.integers(min_value=0, max_value=len(text)))
    return text[:i] + draw(st.text(any_char, min_size=1, max_size=4)) + text[i + 1 :]


def test_package_bytes_raise_only_handoff_format_errors() -> None:
    """On >= EXAMPLES signed-but-deep or character-spliced packages, from_bytes returns a
    package or raises HandoffFormatError (tests/test_handoff_fuzz.py covers byte edits)."""

    def check(data: bytes | str) -> None:
        only_typed(lambda: HandoffPackage.from_bytes(data, secret=SECRET))

    assert fuzz(packages(), check, EXAMPLES) >= EXAMPLES
