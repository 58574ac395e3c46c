"""Pure barge-in reconciliation and in-doubt resolution, with property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from callstate.journal import events as ev
from callstate.journal.state import SessionState, ToolCall, fold
from callstate.tools.reconcile import (
    default_supersedes,
    held_decisions,
    is_backchannel,
    resolve_in_doubt,
    split_heard,
)

# -- helpers -------------------------------------------------------------------------------


def _events(*specs: tuple[type[ev.Event], dict[str, Any]]) -> list[ev.Event]:
    out: list[ev.Event] = [ev.SessionStarted(seq=1, session_id="s", agent="a")]
    for cls, fields in specs:
        out.append(cls(seq=len(out) + 1, **fields))
    return out


def _held_state(effect: str, status: str, later_turns: list[str]) -> SessionState:
    """A call requested, overtaken by a barge-in, landed and held; then ``later_turns``."""
    terminal: tuple[type[ev.Event], dict[str, Any]]
    if status == "succeeded":
        terminal = (ev.ToolSucceeded, {"call_id": "c1", "result": {"ok": True}})
    elif status == "failed":
        terminal = (ev.ToolFailed, {"call_id": "c1", "error": "boom"})
    else:
        terminal = (ev.ToolInDoubt, {"call_id": "c1", "resolution": "unknown"})
    events = _events(
        (ev.UserTurn, {"text": "check my booking"}),
        (ev.ToolRequested, {"call_id": "c1", "name": "t", "effect": effect, "turn": 1}),
        (ev.ToolStarted, {"call_id": "c1"}),
        (ev.Interrupted, {"overtaken": ["c1"]}),
        terminal,
        (ev.ToolDelivery, {"call_id": "c1", "decision": "held"}),
        *[(ev.UserTurn, {"text": t}) for t in later_turns],
    )
    return fold(events)


# -- speech --------------------------------------------------------------------------------


def test_backchannels_are_recognised() -> None:
    """Acknowledgements and empty turns are backchannels; questions are not."""
    assert [True, True, True, True, False, False] == [
        is_backchannel(t)
        for t in ["", "Okay.", "uh-huh, go on", "Sorry, yes", "what about Friday?", "no"]
    ]


def test_split_heard_keeps_the_unspoken_rest() -> None:
    """The unheard rest follows the heard prefix, exact or word by word."""
    text = "Sure, moving it to eight and texting you a confirmation."
    assert "and texting you a confirmation." == split_heard(text, "Sure, moving it to eight")
    assert "and texting you a confirmation." == split_heard(text, "sure moving it to eight")
    assert text == split_heard(text, "")
    assert text == split_heard(text, "completely different")
    assert "" == split_heard(text, text)


@given(st.lists(st.sampled_from(["Sure,", "moving", "it", "to", "eight."]), max_size=5))
def test_split_heard_is_the_exact_rest_for_prefixes(words: list[str]) -> None:
    """For any word prefix heard, heard + unspoken reconstructs the sentence."""
    text = "Sure, moving it to eight."
    all_words = text.split()
    n = 0
    while n < len(words) and n < len(all_words) and words[n] == all_words[n]:
        n += 1
    heard = " ".join(all_words[:n])
    rest = split_heard(text, heard)
    assert text == " ".join(w for w in (heard, rest) if w)


# -- held results --------------------------------------------------------------------------


def test_nothing_is_decided_before_the_callers_turn_ends() -> None:
    """A held result stays held while the caller has not finished a turn since the barge-in."""
    assert [] == held_decisions(_held_state("write", "succeeded", []))


def test_a_held_write_is_announced_whatever_the_caller_said() -> None:
    """Writes are always announced, succeeded, failed or unknown alike."""
    for status in ("succeeded", "failed", "unknown"):
        state = _held_state("write", status, ["actually, what's the weather?"])
        [d] = held_decisions(state)
        assert ("c1", "announced") == (d.call_id, d.decision)


def test_a_held_read_is_discarded_when_superseded_and_delivered_otherwise() -> None:
    """A new question supersedes a read; a backchannel does not."""
    [moved_on] = held_decisions(_held_state("read", "succeeded", ["what about Friday instead?"]))
    [acked] = held_decisions(_held_state("read", "succeeded", ["okay"]))
    assert ("discarded", "delivered") == (moved_on.decision, acked.decision)


def test_the_supersedes_rule_can_be_replaced() -> None:
    """A custom rule decides instead of the backchannel rule."""
    state = _held_state("read", "succeeded", ["what about Friday instead?"])

    def never(call: ToolCall, turns: list[str], state: SessionState) -> bool:
        return False

    [d] = held_decisions(state, supersedes=never)
    assert "delivered" == d.decision


def test_a_read_is_superseded_if_any_later_turn_says_something() -> None:
    """Several turns since the barge-in: one substantive turn is enough to supersede."""
    call = ToolCall(call_id="c", name="t")
    state = SessionState()
    assert default_supersedes(call, ["okay", "and my other booking?"], state)
    assert not default_supersedes(call, ["okay", "mhm"], state)


@given(
    effect=st.sampled_from(["read", "write"]),
    status=st.sampled_from(["succeeded", "failed", "unknown"]),
    turns=st.lists(
        st.sampled_from(["", "okay", "go on", "no wait", "what time is it?"]), max_size=3
    ),
)
def test_held_decisions_properties(effect: str, status: str, turns: list[str]) -> None:
    """One decision per held call once a turn ended; writes never discarded; pure."""
    state = _held_state(effect, status, turns)
    before = state.calls["c1"].delivery
    decisions = held_decisions(state)
    assert before == state.calls["c1"].delivery  # pure: the state is not changed
    if not turns:
        assert [] == decisions
        return
    [d] = decisions
    if effect == "write":
        assert "announced" == d.decision
    else:
        expected = "discarded" if any(not is_backchannel(t) for t in turns) else "delivered"
        assert expected == d.decision


# -- in-doubt resolution -------------------------------------------------------------------


def _crashed(
    effect: str, idempotent: bool, *, started: bool = True, interrupted: bool = False
) -> SessionState:
    specs: list[tuple[type[ev.Event], dict[str, Any]]] = [
        (ev.AgentStarted, {"utterance_id": "u1", "text": "Bye!"}),
    ]
    if interrupted:
        specs.append((ev.Interrupted, {"utterance_id": "u1"}))
    specs.append(
        (
            ev.ToolRequested,
            {
                "call_id": "c1",
                "name": "t",
                "effect": effect,
                "idempotent": idempotent,
                "utterance_id": "u1",
            },
        )
    )
    if started:
        specs.append((ev.ToolStarted, {"call_id": "c1", "attempt": 2, "idempotency_key": "k"}))
    return fold(_events(*specs))


def test_in_doubt_policy_per_tool_kind() -> None:
    """Read re-runs, idempotent write re-runs with its key, non-idempotent write is unknown."""
    [read] = resolve_in_doubt(_crashed("read", False), registered={"t"})
    [idem] = resolve_in_doubt(_crashed("write", True), registered={"t"})
    [once] = resolve_in_doubt(_crashed("write", False), registered={"t"})
    assert ("rerun", 3) == (read.action, read.attempt)
    assert ("rerun", 3, "k") == (idem.action, idem.attempt, idem.idempotency_key)
    assert ("unknown", 0) == (once.action, once.attempt)


def test_unregistered_tools_are_never_dropped() -> None:
    """A started call whose tool is not registered here ends unknown, with the reason."""
    [d] = resolve_in_doubt(_crashed("read", False), registered=set())
    assert "unknown" == d.action
    assert "not registered" in d.reason


def test_never_started_calls_start_fresh_unless_their_generation_was_cut() -> None:
    """Requested-but-not-started: started as attempt 1; a write from a cut generation cancelled."""
    [fresh] = resolve_in_doubt(_crashed("write", False, started=False), registered={"t"})
    [cut] = resolve_in_doubt(
        _crashed("write", False, started=False, interrupted=True), registered={"t"}
    )
    assert ("start", 1) == (fresh.action, fresh.attempt)
    assert "cancel" == cut.action


def test_running_calls_and_handoff_in_flight_calls_are_skipped() -> None:
    """Calls still running here, or in flight at a handoff's source, are not in doubt."""
    assert [] == resolve_in_doubt(_crashed("write", False), registered={"t"}, running={"c1"})
    assert [] == resolve_in_doubt(_crashed("write", False), registered={"t"}, via="handoff")


@given(
    effect=st.sampled_from(["read", "write"]),
    idempotent=st.booleans(),
    started=st.booleans(),
    registered=st.booleans(),
)
def test_a_non_idempotent_write_that_started_is_never_rerun(
    effect: str, idempotent: bool, started: bool, registered: bool
) -> None:
    """Whatever the mix, a started non-idempotent write is never re-run or re-started."""
    state = _crashed(effect, idempotent, started=started)
    [d] = resolve_in_doubt(state, registered={"t"} if registered else set())
    if effect == "write" and not idempotent and started:
        assert "unknown" == d.action
    if d.action in ("rerun", "start"):
        assert registered
