"""Fuzzing HandoffPackage.from_bytes: nothing but HandoffFormatError ever escapes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import callstate
from callstate.handoff.package import HandoffPackage, build_payload, key_id
from callstate.journal import events as ev
from callstate.journal.context import build_messages
from callstate.journal.state import fold

SECRET = b"fuzz-handoff-secret-0123456789abc"
EXAMPLES = 10_000


def _valid() -> bytes:
    events: list[ev.Event] = [
        ev.SessionStarted(seq=1, at=1.0, session_id="s1", agent="triage", userdata={"k": [1]}),
        ev.UserTurn(seq=2, at=2.0, text="move my booking"),
        ev.AgentStarted(seq=3, at=3.0, utterance_id="u1", text="one moment"),
        ev.ToolRequested(seq=4, at=4.0, call_id="c1", name="move", args={"id": "B1"}),
        ev.ToolStarted(seq=5, at=4.0, call_id="c1"),
        ev.ToolSucceeded(seq=6, at=5.0, call_id="c1", result={"ok": True}),
        ev.Interrupted(seq=7, at=6.0, utterance_id="u1", heard_text="one", unspoken_text=" moment"),
        ev.HandoffOffered(seq=8, at=7.0, package_id="p1", to_agent="billing"),
    ]
    payload = build_payload(fold(events), package_id="p1", to="billing", created_at=7.0)
    return HandoffPackage(payload).to_bytes(SECRET)


VALID = _valid()
VALID_DOC: dict[str, Any] = json.loads(VALID)


def _sign(payload: bytes, *, v: Any = 2, alg: Any = "HS256") -> bytes:
    kid = key_id(SECRET)
    domain = b"callstate.handoff.v%d\n" % (v if v in (1, 2) else 2)
    mac = hmac.new(SECRET, domain + kid.encode() + b"\n" + payload, hashlib.sha256)
    sig = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    head = json.dumps({"v": v, "alg": alg, "kid": kid, "sig": sig})
    return head[:-1].encode() + b',"payload":' + payload + b"}"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
payload_keys = st.sampled_from([*VALID_DOC["payload"].keys(), "surprise", ""])


@st.composite
def signed_payloads(draw: st.DrawFn) -> bytes:
    """A correctly signed envelope around a valid payload with random edits."""
    payload = json.loads(json.dumps(VALID_DOC["payload"]))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        key = draw(payload_keys)
        action = draw(st.sampled_from(["set", "drop", "nested"]))
        if action == "drop":
            payload.pop(key, None)
        elif action == "set":
            payload[key] = draw(json_values)
        else:
            target = payload.get(key)
            if isinstance(target, list) and target:
                i = draw(st.integers(min_value=0, max_value=len(target) - 1))
                if isinstance(target[i], dict):
                    names = st.text(max_size=12)
                    if target[i]:
                        names = names | st.sampled_from(sorted(target[i]))
                    target[i][draw(names)] = draw(json_values)
                else:
                    target[i] = draw(json_values)
            elif isinstance(target, dict):
                target[draw(st.text(max_size=10))] = draw(json_values)
    body = json.dumps(payload, allow_nan=True).encode()
    return _sign(body, v=draw(st.sampled_from([2, 2, 2, 1, 3, 0, -1, "2", None, 2.0])))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """The valid package with bytes flipped, inserted, removed or cut off."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not data:
            break
        i = draw(st.integers(min_value=0, max_value=len(data) - 1))
        match draw(st.sampled_from(["flip", "insert", "delete", "truncate"])):
            case "flip":
                data[i] = draw(st.integers(min_value=0, max_value=255))
            case "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
            case "delete":
                del data[i : i + draw(st.integers(min_value=1, max_value=16))]
            case _:
                del data[i:]
    return bytes(data)


envelopes = st.dictionaries(
    st.sampled_from(["v", "alg", "kid", "sig", "payload", "x"]), json_values, max_size=6
).map(lambda d: json.dumps(d, allow_nan=True).encode())

inputs = st.one_of(
    st.binary(max_size=300),
    mutated(),
    signed_payloads(),
    envelopes,
    st.text(max_size=200),
)


def test_from_bytes_raises_only_handoff_format_error() -> None:
    """On ≥10,000 fuzzed inputs from_bytes returns a usable package or raises HandoffFormatError."""
    seen = {"inputs": 0, "decoded": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=inputs)
    def check(data: bytes | str) -> None:
        seen["inputs"] += 1
        try:
            pkg = HandoffPackage.from_bytes(data, secret=SECRET)
        except callstate.HandoffFormatError:
            return
        seen["decoded"] += 1
        # a package that verified is fully usable as plain data
        state = pkg.to_state()
        assert pkg.messages is not None
        assert isinstance(build_messages(state), list)
        assert isinstance(pkg.ledger, list)
        assert pkg.to_bytes() == (data.encode() if isinstance(data, str) else data)

    check()
    assert seen["inputs"] >= EXAMPLES
    assert seen["decoded"] > 0  # the signed-payload strategy does reach the decoder
