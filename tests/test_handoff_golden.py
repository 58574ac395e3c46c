"""Golden handoff packages of format versions 1 and 2: they keep decoding, to the same content.

``tests/golden/handoff_v1_*.json`` and ``handoff_v2_*.json`` were written once by the
callstate version of their format (signed with ``GOLDEN_SECRET``) and are never
regenerated: a change that stops them decoding, or changes what they decode to, breaks
packages already in flight between versions. ``handoff_v2_owed.json`` is the basic
package's payload with the outcomes given to and owed to the source's model set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import callstate
from callstate.handoff.package import HandoffPackage

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_SECRET = b"callstate-golden-handoff-key-v1!"


def _load(name: str) -> tuple[bytes, HandoffPackage]:
    data = (GOLDEN / name).read_bytes()
    return data, HandoffPackage.from_bytes(data, secret=GOLDEN_SECRET)


def test_basic_v1_package_decodes_to_its_content() -> None:
    """handoff_v1_basic.json: routing, ledger, owed and in-flight calls, partials, userdata."""
    _, pkg = _load("handoff_v1_basic.json")
    assert (1, "pkg-golden-basic", "sess-golden-1", "triage", "billing", 1) == (
        pkg.version,
        pkg.package_id,
        pkg.session_id,
        pkg.source_agent,
        pkg.target_agent,
        pkg.epoch,
    )
    assert (
        "billing question",
        "Caller wants booking B1 at 20:00 and has an invoice question.",
    ) == (
        pkg.reason,
        pkg.summary,
    )
    assert 1700000013.0 == pkg.created_at
    ledger = {c["call_id"]: c for c in pkg.ledger}
    assert {
        "c-read": ("succeeded", None),
        "c-fail": ("failed", None),
        "c-write": ("started", None),
        "c-held": ("succeeded", "held"),
        "c-doubt": ("unknown", None),
    } == {cid: (c["status"], c["delivery"]) for cid, c in ledger.items()}
    assert (["c-write"], ["c-held"], ["c-doubt"]) == (pkg.in_flight, pkg.held, pkg.in_doubt)
    write = ledger["c-write"]
    assert ("write", True, "undo_move", "k-write", True) == (
        write["effect"],
        write["idempotent"],
        write["compensate"],
        write["idempotency_key"],
        write["overtaken"],
    )
    assert ({"slots": ["20:00", "21:00"]}, {"page": 1}, 5.0) == (
        ledger["c-read"]["result"],
        ledger["c-read"]["progress"],
        ledger["c-read"]["timeout_s"],
    )
    assert ("TimeoutError: upstream", "TimeoutError") == (
        ledger["c-fail"]["error"],
        ledger["c-fail"]["error_type"],
    )
    assert ("and also my last invoice was", " to eight o'clock now") == (pkg.partial, pkg.unspoken)
    assert {"intent": "billing", "limits": {"refund": 50.5}, "plan": "pro"} == pkg.userdata
    assert {"role": "user", "content": "Hi, I need to move booking B1 to eight"} == pkg.messages[0]
    assert {"role": "assistant", "content": "Moving booking B1"} == pkg.messages[6]
    assert ["c-write", "c-held", "c-doubt"] == [c["id"] for c in pkg.messages[7]["tool_calls"]]
    assert 9 == len(pkg.items)
    state = pkg.to_state()
    assert ("billing", "+15551234567", {"channel": "phone"}) == (
        state.agent,
        state.caller,
        state.metadata,
    )


def test_trimmed_v1_package_decodes_to_its_content() -> None:
    """handoff_v1_trimmed.json: six items summarized, the calls still running kept."""
    _, pkg = _load("handoff_v1_trimmed.json")
    assert (6, 3) == (pkg.payload.trimmed, len(pkg.items))
    assert [
        "Earlier in this call: the caller said "
        '"Hi, I need to move booking B1 to eight"; "Eight is fine". The agent said '
        '"Sure, let me check availability"; "Moving booking B1". Tools run: '
        "check_availability (succeeded), lookup_invoice (failed).",
    ] == [m["content"] for m in pkg.messages if m["role"] == "system"]
    assert ["c-write", "c-held", "c-doubt"] == [i["id"] for i in pkg.items]
    assert ["c-write"] == pkg.in_flight


@pytest.mark.parametrize(
    "name", ["handoff_v1_basic.json", "handoff_v1_trimmed.json", "handoff_v2_owed.json"]
)
def test_golden_packages_reencode_to_the_same_payload_caller_sealed(name: str) -> None:
    """Re-signing a golden (plaintext) package seals its caller; it verifies to the same payload."""
    _, pkg = _load(name)
    again = HandoffPackage(pkg.payload).to_bytes(GOLDEN_SECRET)
    assert pkg.caller is not None
    assert f'"caller":"{pkg.caller}"'.encode() not in again  # (tool args are app data)
    assert pkg == HandoffPackage.from_bytes(again, secret=GOLDEN_SECRET)


@pytest.mark.parametrize(
    "name", ["handoff_v1_basic.json", "handoff_v1_trimmed.json", "handoff_v2_owed.json"]
)
def test_golden_packages_still_refuse_other_secrets(name: str) -> None:
    """A golden package does not verify with another secret."""
    data = (GOLDEN / name).read_bytes()
    with pytest.raises(callstate.HandoffFormatError, match="signature"):
        HandoffPackage.from_bytes(data, secret=b"not-the-golden-secret-0123456789")


def test_v1_package_reads_as_every_final_outcome_given() -> None:
    """A format 1 package owes the model nothing: each final call counts as given."""
    _, pkg = _load("handoff_v1_basic.json")
    assert (1, ["c-read", "c-fail", "c-held", "c-doubt"], []) == (
        pkg.version,
        pkg.given_to_model,
        pkg.owed_to_model,
    )
    assert [] == pkg.to_state().owed_to_model


def test_v2_package_decodes_with_what_the_model_was_given_and_is_owed() -> None:
    """handoff_v2_owed.json: given and owed call ids, the rest as in the basic package."""
    _, pkg = _load("handoff_v2_owed.json")
    _, basic = _load("handoff_v1_basic.json")
    assert (2, "pkg-golden-owed", ["c-read", "c-doubt"], ["c-held", "c-fail"]) == (
        pkg.version,
        pkg.package_id,
        pkg.given_to_model,
        pkg.owed_to_model,
    )
    assert ("+15551234567", basic.messages, basic.ledger) == (pkg.caller, pkg.messages, pkg.ledger)
    assert ["c-held", "c-fail"] == pkg.to_state().owed_to_model


def test_v2_fields_in_a_v1_envelope_are_refused() -> None:
    """A v2 payload relabelled v=1 fails: each format has its own MAC domain."""
    data = (GOLDEN / "handoff_v2_owed.json").read_bytes().replace(b'{"v":2,', b'{"v":1,', 1)
    with pytest.raises(callstate.HandoffFormatError, match="signature"):
        HandoffPackage.from_bytes(data, secret=GOLDEN_SECRET)
