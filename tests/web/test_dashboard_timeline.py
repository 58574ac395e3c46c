"""The dashboard's timeline fold, a pure function of a journal: legs, in-doubt calls,
holds, expiry, and (Hypothesis) any journal folds into well-formed rows."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate.journal import events as ev
from callstate.web.dashboard_timeline import timeline


def _journal(*events: ev.Event, t0: float = 1_000.0) -> list[ev.Event]:
    """``events`` numbered from seq 1, one second apart unless they carry their own ``at``."""
    out = []
    for i, e in enumerate(events):
        at = e.at or t0 + i
        out.append(msgspec.structs.replace(e, seq=i + 1, at=at))
    return out


def test_a_call_a_takeover_left_in_doubt_ends_unknown_in_its_own_leg() -> None:
    """A write started in leg 1 and resolved as unknown by the takeover stays in leg 1,
    in doubt, ending when it was resolved; leg 2 begins on hold."""
    t = timeline(
        "s",
        _journal(
            ev.SessionStarted(session_id="s", agent="a"),
            ev.ToolRequested(call_id="p1", name="charge", effect="write"),
            ev.ToolStarted(call_id="p1"),
            ev.SessionResumed(epoch=2, via="takeover", gap_s=3.0),
            ev.ToolInDoubt(call_id="p1", resolution="unknown"),
            ev.SessionEnded(reason="caller_hangup"),
        ),
    )
    [tool] = t["tools"]
    assert (1, "unknown", True, "unknown", 1_004.0) == (
        tool["leg"],
        tool["status"],
        tool["in_doubt"],
        tool["resolution"],
        tool["ended_at"],
    )
    assert [(1, 1_000.0, 1_003.0), (2, 1_003.0, 1_005.0)] == [
        (leg["epoch"], leg["start"], leg["end"]) for leg in t["legs"]
    ]
    assert [(2, 1_003.0, 1_005.0, "resumed")] == [
        (h["leg"], h["start"], h["end"], h["reason"]) for h in t["holds"]
    ]


def test_the_expiry_of_an_ended_call_does_not_stretch_its_timeline() -> None:
    """A call ended at t=1,002 and expired an hour later still ends at 1,002."""
    t = timeline(
        "s",
        _journal(
            ev.SessionStarted(session_id="s", agent="a"),
            ev.UserTurn(text="hi"),
            ev.SessionEnded(reason="caller_hangup"),
            ev.SessionExpiredEvent(at=4_600.0),
        ),
    )
    assert (1_000.0, 1_002.0) == (t["t0"], t["t1"])
    assert "caller_hangup" == t["legs"][0]["end_reason"]


def test_a_partial_starts_the_callers_span_and_long_text_is_cut() -> None:
    """The caller's span runs from the first partial to the final turn; text past 240
    characters is cut with an ellipsis."""
    long = "x" * 500
    t = timeline(
        "s",
        _journal(
            ev.SessionStarted(session_id="s", agent="a"),
            ev.UserPartial(text="I"),
            ev.UserPartial(text="I want"),
            ev.UserTurn(text=long),
        ),
    )
    [span] = t["speech"]
    assert ("caller", 1_001.0, 1_003.0) == (span["who"], span["start"], span["end"])
    assert "x" * 239 + "…" == span["text"]


def test_a_barge_in_cuts_the_utterance_to_what_was_heard() -> None:
    """The interrupted utterance ends at the barge-in, marked with what was heard."""
    t = timeline(
        "s",
        _journal(
            ev.SessionStarted(session_id="s", agent="a"),
            ev.AgentStarted(utterance_id="u1", text="Sure, I can move it to eight"),
            ev.AgentProgress(utterance_id="u1", spoken_text="Sure,"),
            ev.Interrupted(utterance_id="u1", heard_text="Sure,", overtaken=["c1"]),
        ),
    )
    [span] = t["speech"]
    assert (1_001.0, 1_003.0, True, "Sure,") == (
        span["start"],
        span["end"],
        span["interrupted"],
        span["heard"],
    )
    assert [(1_003.0, ["c1"])] == [(b["at"], b["overtaken"]) for b in t["barge_ins"]]


_CALL_IDS = st.sampled_from(["c1", "c2", "c3"])
_OPS = st.one_of(
    st.builds(ev.UserPartial, text=st.text(max_size=5)),
    st.builds(ev.UserTurn, text=st.text(max_size=5)),
    st.builds(ev.AgentStarted, utterance_id=st.sampled_from(["u1", "u2"])),
    st.builds(
        ev.AgentProgress, utterance_id=st.sampled_from(["u1", "u2"]), spoken_text=st.just("a")
    ),
    st.builds(ev.AgentFinished, utterance_id=st.sampled_from(["u1", "u2"])),
    st.builds(ev.Interrupted, utterance_id=st.sampled_from(["u1", "u2", None])),
    st.builds(ev.ToolRequested, call_id=_CALL_IDS, name=st.just("t")),
    st.builds(ev.ToolStarted, call_id=_CALL_IDS),
    st.builds(ev.ToolSucceeded, call_id=_CALL_IDS),
    st.builds(ev.ToolFailed, call_id=_CALL_IDS, error=st.just("e")),
    st.builds(ev.ToolInDoubt, call_id=_CALL_IDS, resolution=st.sampled_from(["rerun", "unknown"])),
    st.builds(
        ev.ToolDelivery,
        call_id=_CALL_IDS,
        decision=st.sampled_from(["held", "delivered", "announced"]),
    ),
    st.builds(ev.LinkLost),
    st.builds(ev.LinkRestored),
    st.builds(ev.SessionResumed, epoch=st.integers(2, 5)),
    st.builds(ev.HandoffOffered, package_id=st.just("p"), to_agent=st.just("b")),
    st.builds(
        ev.HandoffAccepted, package_id=st.just("p"), agent=st.just("b"), epoch=st.integers(2, 5)
    ),
    st.builds(ev.SessionEnded),
    st.builds(ev.SessionExpiredEvent),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_OPS, max_size=40), st.lists(st.floats(0.0, 5.0), min_size=40, max_size=40))
def test_any_journal_folds_into_well_formed_rows(ops: list[ev.Event], steps: list[float]) -> None:
    """Whatever the order of events, every span ends at or after it starts, every row
    names a leg, and the whole answer encodes as JSON."""
    at, events = 1_000.0, [ev.SessionStarted(session_id="s", agent="a", seq=1, at=1_000.0)]
    for i, op in enumerate(ops):
        at += steps[i]
        events.append(msgspec.structs.replace(op, seq=i + 2, at=at))
    t = timeline("s", events)
    epochs = {leg["epoch"] for leg in t["legs"]}
    spans: list[tuple[Any, Any]] = [(leg["start"], leg["end"]) for leg in t["legs"]]
    spans += [(s["start"], s["end"]) for s in t["speech"]]
    spans += [(h["start"], h["end"]) for h in t["holds"]]
    spans += [(c["requested_at"], c["ended_at"]) for c in t["tools"] if c["ended_at"]]
    assert [] == [(a, b) for a, b in spans if b is None or b < a]
    rows = [*t["speech"], *t["tools"], *t["barge_ins"], *t["holds"], *t["handoffs"]]
    assert [] == [r for r in rows if r["leg"] not in epochs]
    assert t["t0"] <= t["t1"]
    msgspec.json.encode(t)
