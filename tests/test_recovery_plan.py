"""The recovery planner: a pure function from state (and in-doubt decisions) to a plan."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate.continuity.plan import plan
from callstate.journal import events as ev
from callstate.journal.context import build_messages
from callstate.journal.state import SessionState, apply, fold
from callstate.tools.reconcile import InDoubtDecision


def _state(*events: Any) -> SessionState:
    numbered = [
        type(e)(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "seq": i})
        for i, e in enumerate(events, start=1)
    ]
    return fold(numbered)


START = ev.SessionStarted(session_id="s1", agent="triage", caller="+1555")


def test_a_drop_mid_utterance_keeps_the_unheard_rest() -> None:
    """An utterance cut by a drop yields its unheard rest and 'while you were saying'."""
    state = _state(
        START,
        ev.AgentStarted(utterance_id="u1", text="Your table is booked for eight"),
        ev.AgentProgress(utterance_id="u1", spoken_text="Your table"),
    )
    p = plan(state, gap_s=8.0, via="resume")
    assert "is booked for eight" == p.unspoken
    assert p.resume_note.startswith(
        "The line dropped for 8 s while you were saying “is booked for eight”."
    )


def test_a_barge_in_before_the_drop_is_told_apart() -> None:
    """The rest of a barged-in utterance is reported as cut off by the caller."""
    state = _state(
        START,
        ev.AgentStarted(utterance_id="u1", text="Your table is booked"),
        ev.Interrupted(utterance_id="u1", heard_text="Your table", unspoken_text="is booked"),
    )
    p = plan(state, gap_s=75.0, via="resume")
    assert "is booked" == p.unspoken
    assert "The line dropped for 1 min 15 s." in p.resume_note
    assert "The caller had cut you off before you said “is booked”." in p.resume_note


def test_the_callers_partial_utterance_is_carried() -> None:
    """An unfinished interim transcript is in the plan and the note."""
    state = _state(START, ev.UserTurn(text="hi"), ev.UserPartial(text="I want to change"))
    p = plan(state, gap_s=3.0, via="resume")
    assert "I want to change" == p.partial
    assert "the caller had started to say “I want to change”" in p.resume_note


def test_in_doubt_calls_follow_the_decisions_made() -> None:
    """Each decision appears with its resolution; an unknown write asks to verify."""
    state = _state(
        START,
        ev.ToolRequested(call_id="c1", name="charge_card", effect="write"),
        ev.ToolStarted(call_id="c1"),
        ev.ToolInDoubt(call_id="c1", resolution="unknown"),
        ev.ToolRequested(call_id="c2", name="check_slots"),
        ev.ToolStarted(call_id="c2"),
        ev.ToolInDoubt(call_id="c2", resolution="rerun"),
    )
    decisions = [
        InDoubtDecision(
            call_id="c1",
            name="charge_card",
            effect="write",
            idempotent=False,
            action="unknown",
            reason="x",
        ),
        InDoubtDecision(
            call_id="c2",
            name="check_slots",
            effect="read",
            idempotent=False,
            action="rerun",
            reason="y",
        ),
    ]
    p = plan(state, gap_s=2.0, via="resume", resolutions=decisions)
    assert [("c1", "unknown", "unknown"), ("c2", "rerun", "in_doubt")] == [
        (c.call_id, c.resolution, c.status) for c in p.in_doubt
    ]
    assert "charge_card may or may not have gone through: verify with the caller" in p.resume_note
    assert "check_slots was cut off by the drop and is running again" in p.resume_note


def test_open_calls_without_decisions_are_unresolved() -> None:
    """Without step-1 decisions every call still open is listed as unresolved."""
    state = _state(
        START, ev.ToolRequested(call_id="c1", name="lookup"), ev.ToolStarted(call_id="c1")
    )
    p = plan(state, gap_s=1.0, via="resume")
    assert [("c1", "unresolved")] == [(c.call_id, c.resolution) for c in p.in_doubt]


def test_held_results_are_owed_to_the_caller() -> None:
    """A held write is owed as 'announce', a held read as 'deliver'."""
    state = _state(
        START,
        ev.ToolRequested(call_id="w", name="move_booking", effect="write"),
        ev.ToolSucceeded(call_id="w", result={"ok": True}),
        ev.ToolDelivery(call_id="w", decision="held"),
        ev.ToolRequested(call_id="r", name="check_slots"),
        ev.ToolSucceeded(call_id="r", result=[1]),
        ev.ToolDelivery(call_id="r", decision="held"),
    )
    p = plan(state, gap_s=1.0, via="resume")
    assert [("w", "announce"), ("r", "deliver")] == [(o.call_id, o.action) for o in p.owed]
    assert "Still owed to the caller: what move_booking did, the result of check_slots." in (
        p.resume_note
    )


def test_handoff_note_and_context_with_note() -> None:
    """A handoff plan says so; context() puts system first and the note last."""
    state = _state(START, ev.UserTurn(text="billing please"))
    p = plan(state, gap_s=0.0, via="handoff")
    assert p.resume_note.startswith("This conversation was handed over to you.")
    ctx = p.context(system="You are billing.")
    assert [
        {"role": "system", "content": "You are billing."},
        {"role": "user", "content": "billing please"},
        {"role": "system", "content": p.resume_note},
    ] == ctx


def test_long_quotes_are_truncated() -> None:
    """Quoted text in the note stays short."""
    state = _state(START, ev.UserPartial(text="word " * 100))
    p = plan(state, gap_s=1.0, via="resume")
    assert len(p.resume_note) < 400
    assert "…”" in p.resume_note


_texts = st.text(alphabet="abc ", max_size=12)
_events = st.lists(
    st.one_of(
        st.builds(ev.UserPartial, text=_texts),
        st.builds(ev.UserTurn, text=_texts),
        st.builds(ev.AgentStarted, utterance_id=st.sampled_from(["u1", "u2"]), text=_texts),
        st.builds(ev.AgentProgress, utterance_id=st.sampled_from(["u1", "u2"]), spoken_text=_texts),
        st.builds(ev.Interrupted, utterance_id=st.sampled_from(["u1", "u2"]), heard_text=_texts),
        st.builds(
            ev.ToolRequested,
            call_id=st.sampled_from(["c1", "c2"]),
            name=st.sampled_from(["a", "b"]),
            effect=st.sampled_from(["read", "write"]),
        ),
        st.builds(ev.ToolStarted, call_id=st.sampled_from(["c1", "c2"])),
        st.builds(ev.ToolSucceeded, call_id=st.sampled_from(["c1", "c2"])),
        st.builds(
            ev.ToolDelivery,
            call_id=st.sampled_from(["c1", "c2"]),
            decision=st.sampled_from(["held", "delivered"]),
        ),
    ),
    max_size=25,
)


@settings(max_examples=300)
@given(_events, st.floats(min_value=0, max_value=10_000), st.sampled_from(["resume", "handoff"]))
def test_plan_invariants(events: list[Any], gap: float, via: str) -> None:
    """For any history: the plan's context is the state's, every in-doubt call is open,
    every owed call is held, the note ends with the continue instruction, and planning
    never changes the state."""
    state = _state(START, *events)
    before = build_messages(state)
    p = plan(state, gap_s=gap, via=via)
    assert before == p.messages == build_messages(state)
    assert {c.call_id for c in state.in_flight} == {c.call_id for c in p.in_doubt}
    assert {c.call_id for c in state.owed} == {o.call_id for o in p.owed}
    assert p.resume_note.endswith("continue from where the conversation stopped.")
    assert (state.partial == "") == ("started to say" not in p.resume_note)


@settings(max_examples=200)
@given(_events, _events)
def test_plan_messages_are_the_conversation_at_planning_time(
    before: list[Any], after: list[Any]
) -> None:
    """Whatever the session records after the plan is made (progress, barge-ins, results,
    deliveries), the plan's messages stay those of the state it was made from."""
    state = _state(START, *before, *after)
    head = _state(START, *before)
    expected = build_messages(head)
    p = plan(head, gap_s=1.0, via="resume")
    for event in after:  # the same events, now folded into the state the plan was made from
        apply(head, msgspec.structs.replace(event, seq=head.seq + 1))
    assert build_messages(head) == build_messages(state)  # head has caught up with the fold
    assert p.messages == expected
    assert p.context()[: len(expected)] == expected


def test_messages_are_built_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning does not build the context; the first read does, once."""
    import callstate.continuity.plan as recovery

    built: list[int] = []
    real = recovery.build_messages

    def counting(state: SessionState, **kw: Any) -> list[dict[str, Any]]:
        built.append(1)
        return real(state, **kw)

    monkeypatch.setattr(recovery, "build_messages", counting)
    state = _state(START, ev.UserTurn(text="hi"), ev.AgentStarted(utterance_id="u1", text="hello"))
    p = plan(state, gap_s=0.5, via="resume")
    assert built == []
    assert p.messages == [{"role": "user", "content": "hi"}] == p.messages
    assert built == [1]
