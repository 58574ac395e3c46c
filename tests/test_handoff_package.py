"""HandoffPackage: signed JSON, strict verification, trimming and the default summary."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import callstate
from callstate.handoff.package import (
    HandoffPackage,
    PackageCall,
    build_payload,
    default_summarize,
    key_id,
    trim_point,
)
from callstate.journal import events as ev
from callstate.journal.context import build_messages
from callstate.journal.state import TERMINAL, Item, SessionState, ToolCall, fold

SECRET = b"handoff-test-secret-0123456789ab"
OTHER = b"another-secret-0123456789abcdefg"


def _events() -> list[ev.Event]:
    seq = iter(range(1, 100))
    return [
        ev.SessionStarted(seq=next(seq), at=1.0, session_id="s1", agent="triage", caller="+1555"),
        ev.UserTurn(seq=next(seq), at=2.0, text="I need to change my booking"),
        ev.AgentStarted(seq=next(seq), at=3.0, utterance_id="u1", text="Let me look that up"),
        ev.AgentFinished(seq=next(seq), at=4.0, utterance_id="u1"),
        ev.ToolRequested(seq=next(seq), at=5.0, call_id="c1", name="lookup", args={"id": "B1"}),
        ev.ToolStarted(seq=next(seq), at=5.0, call_id="c1"),
        ev.ToolSucceeded(seq=next(seq), at=6.0, call_id="c1", result={"time": "19:00"}),
        ev.ToolRequested(
            seq=next(seq), at=7.0, call_id="c2", name="move", args={"to": "20:00"}, effect="write"
        ),
        ev.ToolStarted(seq=next(seq), at=7.0, call_id="c2"),
        ev.AgentStarted(seq=next(seq), at=8.0, utterance_id="u2", text="Moving it to eight now"),
        ev.Interrupted(
            seq=next(seq),
            at=9.0,
            utterance_id="u2",
            heard_text="Moving it",
            unspoken_text=" to eight now",
            overtaken=["c2"],
        ),
        ev.UserPartial(seq=next(seq), at=10.0, text="actually I also want to"),
        ev.UserdataPatch(seq=next(seq), at=10.5, set={"booking": "B1", "tier": 2}),
        ev.HandoffOffered(seq=next(seq), at=11.0, package_id="p1", to_agent="billing"),
    ]


def _state() -> SessionState:
    return fold(_events())


def _package(**kw: Any) -> HandoffPackage:
    state = _state()
    payload = build_payload(state, package_id="p1", to="billing", created_at=11.0, **kw)
    return HandoffPackage(payload)


def _resign(envelope: dict[str, Any], payload: bytes, secret: bytes = SECRET) -> bytes:
    """Build an envelope around raw ``payload`` bytes with a valid signature."""
    kid = key_id(secret)
    domain = b"callstate.handoff.v%d\n" % envelope.get("v", 2)
    mac = hmac.new(secret, domain + kid.encode() + b"\n" + payload, "sha256")
    sig = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    head = {**envelope, "kid": kid, "sig": sig}
    head.pop("payload", None)
    return json.dumps(head).encode()[:-1] + b',"payload":' + payload + b"}"


def _payload_of(data: bytes) -> dict[str, Any]:
    return json.loads(data)["payload"]  # type: ignore[no-any-return]


# -- round trip and content --------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    """from_bytes(to_bytes(p)) equals p, and the wire form is signed JSON with v=2."""
    pkg = _package(reason="billing question", summary="wants a refund")
    data = pkg.to_bytes(SECRET)
    doc = json.loads(data)
    assert (2, "HS256", key_id(SECRET)) == (doc["v"], doc["alg"], doc["kid"])
    back = HandoffPackage.from_bytes(data, secret=SECRET)
    assert pkg == back
    assert data == back.to_bytes()
    assert ("billing question", "wants a refund") == (back.reason, back.summary)


def test_package_carries_ledger_partials_userdata_and_openai_messages() -> None:
    """The package holds the conversation, tool ledger, held/in-flight calls and app state."""
    state = _state()
    pkg = HandoffPackage.from_bytes(_package().to_bytes(SECRET), secret=SECRET)
    assert build_messages(state) == pkg.messages
    assert ("triage", "billing", 1, "s1") == (
        pkg.source_agent,
        pkg.target_agent,
        pkg.epoch,
        pkg.session_id,
    )
    assert ["c2"] == pkg.in_flight
    ledger = {c["call_id"]: c for c in pkg.ledger}
    assert ("succeeded", {"time": "19:00"}) == (ledger["c1"]["status"], ledger["c1"]["result"])
    assert ("started", "write", True) == (
        ledger["c2"]["status"],
        ledger["c2"]["effect"],
        ledger["c2"]["overtaken"],
    )
    assert {"booking": "B1", "tier": 2} == pkg.userdata
    assert ("actually I also want to", " to eight now") == (pkg.partial, pkg.unspoken)
    assert "Moving it" == pkg.items[-1]["text"]


def test_to_state_rebuilds_the_source_conversation() -> None:
    """pkg.to_state() has the source's items, calls and userdata, and the same context."""
    state = _state()
    rebuilt = _package().to_state()
    assert state.items == rebuilt.items
    # the v1 ledger carries these ToolCall fields; the target's own state comes from the journal
    fields = PackageCall.__struct_fields__
    assert {cid: [getattr(c, f) for f in fields] for cid, c in state.calls.items()} == {
        cid: [getattr(c, f) for f in fields] for cid, c in rebuilt.calls.items()
    }
    assert state.userdata == rebuilt.userdata
    assert build_messages(state) == build_messages(rebuilt)


def test_held_results_are_listed() -> None:
    """A result whose spoken delivery is owed appears in pkg.held."""
    events = [
        *_events()[:-1],
        ev.ToolSucceeded(seq=14, at=11.0, call_id="c2", result="moved"),
        ev.ToolDelivery(seq=15, at=11.0, call_id="c2", decision="held"),
        ev.HandoffOffered(seq=16, at=12.0, package_id="p1", to_agent="billing"),
    ]
    payload = build_payload(fold(events), package_id="p1", to="billing", created_at=12.0)
    pkg = HandoffPackage(payload)
    assert (["c2"], []) == (pkg.held, pkg.in_flight)


def test_unsigned_package_cannot_be_serialized_without_a_secret() -> None:
    """to_bytes() on a package built without a signature says a secret is needed."""
    with pytest.raises(callstate.HandoffError, match="unsigned"):
        _package().to_bytes()


# -- strict verification ------------------------------------------------------------------


def test_unsigned_input_is_rejected() -> None:
    """An envelope without `sig` fails as unsigned."""
    doc = json.loads(_package().to_bytes(SECRET))
    del doc["sig"]
    with pytest.raises(callstate.HandoffFormatError, match="unsigned"):
        HandoffPackage.from_bytes(json.dumps(doc).encode(), secret=SECRET)


def test_tampered_payload_is_rejected() -> None:
    """Changing one byte of the payload fails the signature check."""
    data = _package().to_bytes(SECRET)
    tampered = data.replace(b'"to_agent"', b'"to_agent"').replace(b"billing", b"billinG", 1)
    assert data != tampered
    with pytest.raises(callstate.HandoffFormatError, match="signature"):
        HandoffPackage.from_bytes(tampered, secret=SECRET)


def test_wrong_secret_is_rejected_and_rotation_verifies_with_any_key() -> None:
    """A package signed with another key fails; a key list (rotation) accepts the old key."""
    data = _package().to_bytes(OTHER)
    with pytest.raises(callstate.HandoffFormatError, match="signature"):
        HandoffPackage.from_bytes(data, secret=SECRET)
    assert "p1" == HandoffPackage.from_bytes(data, secret=[SECRET, OTHER]).package_id


def test_unknown_future_version_is_named() -> None:
    """v=3 fails with 'unsupported handoff format version 3'."""
    data = _package().to_bytes(SECRET).replace(b'{"v":2,', b'{"v":3,', 1)
    with pytest.raises(callstate.HandoffFormatError, match="unsupported handoff format version 3"):
        HandoffPackage.from_bytes(data, secret=SECRET)


@pytest.mark.parametrize("keep", [0, 1, 10, 100, -1])
def test_truncated_input_is_rejected(keep: int) -> None:
    """Every proper prefix of a package fails as malformed, never anything else."""
    data = _package().to_bytes(SECRET)
    with pytest.raises(callstate.HandoffFormatError, match="invalid handoff package"):
        HandoffPackage.from_bytes(data[:keep], secret=SECRET)


def test_size_cap_is_checked_before_parsing() -> None:
    """Input over max_bytes fails naming the cap, even if it is otherwise valid."""
    data = _package().to_bytes(SECRET)
    with pytest.raises(callstate.HandoffFormatError, match=f"max_bytes cap of {len(data) - 1}"):
        HandoffPackage.from_bytes(data, secret=SECRET, max_bytes=len(data) - 1)
    assert "p1" == HandoffPackage.from_bytes(data, secret=SECRET, max_bytes=len(data)).package_id


def test_bad_field_is_named_with_its_payload_path() -> None:
    """A signed payload with a wrong type names the field, e.g. $.payload.conversation[3].role."""
    data = _package().to_bytes(SECRET)
    payload = _payload_of(data)
    payload["conversation"][3]["role"] = "wizard"
    forged = _resign(json.loads(data), json.dumps(payload).encode())
    with pytest.raises(callstate.HandoffFormatError, match=r"\$\.payload\.conversation\[3\]\.role"):
        HandoffPackage.from_bytes(forged, secret=SECRET)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda p: p.update(surprise=1), "surprise"),
        (lambda p: p.update(epoch=0), r"\$\.payload\.epoch"),
        (lambda p: p.pop("target_agent"), "target_agent"),
        (lambda p: p["ledger"].append(dict(p["ledger"][0])), r"ledger\[2\]\.call_id"),
        (lambda p: p["items"].append({"kind": "call", "id": "nope"}), r"items\[5\]\.id"),
        (lambda p: p["conversation"][4].pop("tool_call_id"), r"conversation\[4\]\.tool_call_id"),
    ],
)
def test_signed_but_inconsistent_payloads_are_rejected(mutate: Any, needle: str) -> None:
    """Unknown fields, out-of-range values and broken references fail, naming the path."""
    data = _package().to_bytes(SECRET)
    payload = _payload_of(data)
    mutate(payload)
    forged = _resign(json.loads(data), json.dumps(payload).encode())
    with pytest.raises(callstate.HandoffFormatError, match=needle):
        HandoffPackage.from_bytes(forged, secret=SECRET)


def test_data_never_names_types_to_import() -> None:
    """Userdata shaped like a pickle/jsonpickle reference stays plain data."""
    data = _package().to_bytes(SECRET)
    payload = _payload_of(data)
    payload["userdata"] = {"py/object": "os.system", "__reduce__": ["os.system", ["id"]]}
    forged = _resign(json.loads(data), json.dumps(payload).encode())
    pkg = HandoffPackage.from_bytes(forged, secret=SECRET)
    assert {"py/object": "os.system", "__reduce__": ["os.system", ["id"]]} == pkg.userdata


@pytest.mark.parametrize("bad", ["not-base64!", "AAAA"])
def test_malformed_signature_is_named(bad: str) -> None:
    """A `sig` that is not a base64url SHA-256 MAC fails naming `sig`."""
    doc = json.loads(_package().to_bytes(SECRET))
    doc["sig"] = bad
    with pytest.raises(callstate.HandoffFormatError, match="`sig`"):
        HandoffPackage.from_bytes(json.dumps(doc).encode(), secret=SECRET)


def test_non_bytes_input_is_a_format_error() -> None:
    """Passing something that is not bytes fails as a format error."""
    with pytest.raises(callstate.HandoffFormatError, match="expected bytes"):
        HandoffPackage.from_bytes(12345, secret=SECRET)  # type: ignore[arg-type]


def test_the_envelope_may_be_laid_out_any_way() -> None:
    """The signature covers the payload bytes, not the envelope's layout: reordered keys
    and whitespace verify to the same package."""
    pkg = _package()
    data = pkg.to_bytes(SECRET)
    body = data[data.index(b'"payload":') + len(b'"payload":') : -1]
    doc = json.loads(data)
    relaid = (
        f'{{ "sig": "{doc["sig"]}",\n "payload": '.encode()
        + body
        + f', "kid": "{doc["kid"]}", "alg": "HS256", "v": 2 }}'.encode()
    )
    back = HandoffPackage.from_bytes(relaid, secret=SECRET)
    assert pkg == back
    assert relaid == back.to_bytes()


def test_an_envelope_field_after_the_payload_is_refused() -> None:
    """Bytes appended inside the envelope fail by name, though the signed head is intact."""
    data = _package().to_bytes(SECRET)
    with pytest.raises(callstate.HandoffFormatError, match="unknown field `extra`"):
        HandoffPackage.from_bytes(data[:-1] + b',"extra":1}', secret=SECRET)


def test_mac_binds_the_key_id() -> None:
    """Swapping the key id in the header (same payload, same sig) fails verification."""
    doc = json.loads(_package().to_bytes(SECRET))
    doc["kid"] = key_id(OTHER)
    with pytest.raises(callstate.HandoffFormatError, match="signature"):
        HandoffPackage.from_bytes(json.dumps(doc).encode(), secret=[SECRET, OTHER])


def test_secret_mac_is_hmac_sha256_over_exact_payload_bytes() -> None:
    """The signature is HMAC-SHA256 of the exact payload bytes (an independent check)."""
    data = _package().to_bytes(SECRET)
    start = data.index(b'"payload":') + len(b'"payload":')
    body = data[start:-1]
    kid = key_id(SECRET)
    mac = hmac.new(SECRET, b"callstate.handoff.v2\n" + kid.encode() + b"\n" + body, hashlib.sha256)
    sig = json.loads(data)["sig"]
    assert base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode() == sig


# -- trimming --------------------------------------------------------------------------


def _call_item(cid: str) -> Item:
    return Item(kind="call", id=cid, done=True)


def test_trim_keeps_newest_items() -> None:
    """Without calls in the way, the oldest len-max_items items are cut."""
    items = [Item(kind="user", text=str(i)) for i in range(10)]
    assert (0, 0, 7, 10) == (
        trim_point(items, {}, None),
        trim_point(items, {}, 10),
        trim_point(items, {}, 3),
        trim_point(items, {}, 0),
    )


def test_trim_never_splits_a_run_of_calls() -> None:
    """A cut that would fall between two consecutive call items moves before the run."""
    calls = {c: ToolCall(call_id=c, name="t", status="succeeded") for c in ("a", "b")}
    items = [Item(kind="user"), _call_item("a"), _call_item("b"), Item(kind="assistant")]
    assert 1 == trim_point(items, calls, 2)


def test_trim_never_drops_a_running_or_owed_call() -> None:
    """A call still running, or with a held result, is kept with everything after it."""
    running = {"a": ToolCall(call_id="a", name="t", status="started")}
    held = {"a": ToolCall(call_id="a", name="t", status="succeeded", delivery="held")}
    items = [Item(kind="user"), _call_item("a"), *[Item(kind="user") for _ in range(5)]]
    assert (1, 1) == (trim_point(items, running, 2), trim_point(items, held, 2))


_statuses = st.sampled_from(["requested", "started", "succeeded", "failed", "unknown"])


@given(
    kinds=st.lists(st.sampled_from(["user", "assistant", "call"]), max_size=30),
    statuses=st.lists(_statuses, min_size=30, max_size=30),
    held=st.lists(st.booleans(), min_size=30, max_size=30),
    max_items=st.integers(min_value=0, max_value=35),
)
def test_trim_point_invariants(
    kinds: list[str], statuses: list[str], held: list[bool], max_items: int
) -> None:
    """The cut never splits a call run, never drops a live/owed call, and is maximal."""
    items = [
        Item(kind=k, id=f"c{i}" if k == "call" else "")  # type: ignore[arg-type]
        for i, k in enumerate(kinds)
    ]
    calls = {
        f"c{i}": ToolCall(
            call_id=f"c{i}",
            name="t",
            status=statuses[i],  # type: ignore[arg-type]
            delivery="held" if held[i] else None,
        )
        for i, k in enumerate(kinds)
        if k == "call"
    }
    cut = trim_point(items, calls, max_items)

    def pinned(i: int) -> bool:
        c = calls.get(items[i].id)
        return c is not None and (c.status not in TERMINAL or c.delivery == "held")

    assert 0 <= cut <= max(0, len(items) - max_items)
    assert not (0 < cut < len(items) and kinds[cut] == "call" and kinds[cut - 1] == "call")
    assert not any(pinned(i) for i in range(cut))
    # maximal: one more item could not have been cut without breaking a rule
    if cut < len(items) - max_items:
        nxt = cut + 1
        blocked = pinned(cut) or (
            nxt < len(items) and kinds[nxt] == "call" and kinds[cut] == "call"
        )
        assert blocked


def test_default_summary_is_plain_and_deterministic() -> None:
    """The default summary quotes caller and agent and lists tools with their status."""
    state = _state()
    text = default_summarize(build_messages(state))
    assert text == default_summarize(build_messages(state))
    assert (
        'Earlier in this call: the caller said "I need to change my booking". The agent said '
        '"Let me look that up"; "Moving it". Tools run: lookup (succeeded), move (running).'
    ) == text
    assert 40 == len(default_summarize(build_messages(state), limit=40))


def test_default_summary_carries_an_earlier_summary_forward() -> None:
    """A summary message from an earlier trim leads the new summary."""
    msgs = [
        {"role": "system", "content": "Earlier in this call: the caller said hi."},
        {"role": "user", "content": "then this"},
    ]
    assert (
        'Earlier in this call: the caller said hi. Then: the caller said "then this".'
        == default_summarize(msgs)
    )


def test_trimmed_package_starts_with_the_summary() -> None:
    """A trimmed package's messages open with the summary and keep only the newest items."""
    state = _state()
    cut = trim_point(state.items, state.calls, 3)
    pkg = _package(trimmed=cut, earlier="the summary")
    assert (2, 3, "the summary") == (cut, len(pkg.items), pkg.payload.earlier)
    assert {"role": "system", "content": "the summary"} == pkg.messages[0]
    assert 2 == msgspec.json.decode(pkg.to_bytes(SECRET))["payload"]["trimmed"]
