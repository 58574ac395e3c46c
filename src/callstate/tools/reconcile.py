"""Barge-in reconciliation and in-doubt resolution: pure decisions over ``SessionState``.

Nothing here does I/O or records anything; the guard (``callstate._guard``) turns the
decisions into events.

**Held results.** A result that lands after a barge-in overtook its call is written to
the context at once, but its spoken delivery is held. Once the caller has finished a
turn after that barge-in, each held call is decided:

- a write (succeeded, failed or unknown) is ``announced``: the caller must hear what
  was done, whatever they said meanwhile;
- a read is ``discarded`` when the caller's turns since the barge-in *supersede* it, and
  ``delivered`` otherwise.

"Superseded" is judged by one predictable rule: a read is superseded when any final
user turn after the barge-in says something of its own, i.e. is more than a
backchannel ("okay", "uh-huh", "go on", "sorry", …; see :data:`BACKCHANNEL_WORDS`).
A caller who only acknowledged still wants the answer; a caller who asked something
else has moved on. ``ToolRegistry(supersedes=...)`` replaces the rule.

**In-doubt calls.** After a crash, every call without a final outcome is resolved by
policy (:func:`resolve_in_doubt`): a read re-runs, an idempotent write re-runs with the
same idempotency key, a non-idempotent write is never re-run and ends ``unknown``.
A call that was requested but never started cannot have taken effect (its start is
durable before the tool runs), so it is started fresh, unless its generation was
interrupted and it must not run, or its tool is not registered here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from typing import Final, Literal

import msgspec

from ..journal.state import TERMINAL, Item, SessionState, ToolCall

__all__ = [
    "BACKCHANNEL_WORDS",
    "DeliveryDecision",
    "InDoubtDecision",
    "Supersedes",
    "default_supersedes",
    "generation_interrupted",
    "held_decisions",
    "is_backchannel",
    "must_not_run",
    "resolve_in_doubt",
    "split_heard",
    "turns_since",
]

#: Words a caller says to let the agent carry on, not to change the subject.
BACKCHANNEL_WORDS: Final = frozenset(
    {
        "ah", "alright", "carry", "continue", "go", "got", "hm", "hmm", "huh", "i", "it",
        "mhm", "mm", "mmhmm", "oh", "ok", "okay", "on", "please", "right", "see", "so",
        "sorry", "sure", "thanks", "thank", "uh", "uhhuh", "um", "yeah", "yep", "yes",
        "you", "ahead",
    }
)  # fmt: skip
_MAX_BACKCHANNEL_WORDS: Final = 4
_WORD = re.compile(r"[a-z0-9']+")

#: ``(call, user turns since the barge-in, state) -> True`` when the read is superseded.
Supersedes = Callable[[ToolCall, list[str], SessionState], bool]


class DeliveryDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What to do with one held result now that the caller's turn has ended."""

    call_id: str
    decision: Literal["delivered", "discarded", "announced"]
    reason: str


class InDoubtDecision(msgspec.Struct, frozen=True, kw_only=True):
    """How one call left without an outcome is resolved on resume.

    ``action``: ``rerun`` (in doubt, safe to run again: a read, or an idempotent write
    with the same key), ``start`` (requested but never started: it cannot have taken
    effect), ``unknown`` (a non-idempotent write, or a tool not registered here: never
    re-run; the agent verifies with the caller) or ``cancel`` (never started and must
    not start now). ``attempt`` is the attempt number a re-run or start gets.
    """

    call_id: str
    name: str
    effect: Literal["read", "write"]
    idempotent: bool
    action: Literal["rerun", "start", "unknown", "cancel"]
    reason: str
    attempt: int = 0
    idempotency_key: str = ""


# -- speech ---------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("-", ""))


def is_backchannel(text: str) -> bool:
    """True when ``text`` only acknowledges ("okay", "uh-huh, go on") or is empty."""
    words = _words(text)
    return len(words) <= _MAX_BACKCHANNEL_WORDS and all(w in BACKCHANNEL_WORDS for w in words)


def split_heard(text: str, heard: str) -> str:
    """The unspoken rest of ``text`` once the caller heard ``heard`` of it.

    Matches ``heard`` as a prefix of ``text``, first exactly, then word by word ignoring
    case and punctuation (TTS word timings rarely keep punctuation). When nothing of
    ``heard`` lines up with ``text``, the whole text is the unspoken rest.
    """
    if text.startswith(heard):
        return text[len(heard) :].strip()
    heard_words = _words(heard)
    spans = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text.lower())]
    matched = 0
    while (
        matched < len(heard_words)
        and matched < len(spans)
        and spans[matched][2].replace("-", "") == heard_words[matched]
    ):
        matched += 1
    if matched == 0:
        return text.strip()
    return text[spans[matched - 1][1] :].lstrip(" ,.;:!?-").strip()


# -- barge-in reconciliation ----------------------------------------------------------


def _user_texts(items: list[Item]) -> list[str]:
    return [i.text for i in items if i.kind == "user"]


def turns_since(state: SessionState, turn: int) -> list[str]:
    """Texts of the final user turns after the first ``turn`` turns, oldest first."""
    return _user_texts(state.items)[turn:]


def default_supersedes(call: ToolCall, turns: list[str], state: SessionState) -> bool:
    """The default rule: a read is superseded when any later turn is not a backchannel."""
    return any(not is_backchannel(t) for t in turns)


def _reference_turn(call: ToolCall) -> int:
    # a held call waits for a turn after the barge-in that overtook it; a call that was
    # not overtaken (a late result landing on a new owner) waits for a turn after its request
    return call.overtaken_turn if call.overtaken else call.turn


def held_decisions(
    state: SessionState, *, supersedes: Supersedes | None = None
) -> list[DeliveryDecision]:
    """Decide every held result whose caller has finished a turn since the barge-in.

    Results whose caller has not finished a turn since stay held (not in the list).
    Calls are decided in the order they were requested.
    """
    rule = supersedes or default_supersedes
    out: list[DeliveryDecision] = []
    for call in state.calls.values():
        if call.delivery != "held" or call.status not in TERMINAL:
            continue
        ref = _reference_turn(call)
        if state.turn <= ref:
            continue
        if call.effect == "write":
            what = {"succeeded": "was done", "failed": "failed", "cancelled": "was cancelled"}
            heard = what.get(call.status, "may or may not have taken effect")
            out.append(
                DeliveryDecision(
                    call_id=call.call_id,
                    decision="announced",
                    reason=f"a write: the caller must hear that it {heard}",
                )
            )
        elif rule(call, turns_since(state, ref), state):
            out.append(
                DeliveryDecision(
                    call_id=call.call_id,
                    decision="discarded",
                    reason="a read the caller's new turn superseded",
                )
            )
        else:
            out.append(
                DeliveryDecision(
                    call_id=call.call_id,
                    decision="delivered",
                    reason="a read still relevant: the caller only acknowledged",
                )
            )
    return out


# -- generations ----------------------------------------------------------------------


def generation_interrupted(state: SessionState, utterance_id: str | None) -> bool:
    """True when the agent utterance ``utterance_id`` was cut off by a barge-in."""
    if utterance_id is None:
        return False
    for item in reversed(state.items):
        if item.kind == "assistant" and item.id == utterance_id:
            return item.interrupted
    return False


def must_not_run(call: ToolCall, state: SessionState) -> bool:
    """A write, or a cancellable read, asked for by an interrupted generation."""
    return (call.effect == "write" or call.on_interrupt == "cancel") and generation_interrupted(
        state, call.utterance_id
    )


# -- in-doubt resolution --------------------------------------------------------------


def _decision(
    call: ToolCall, action: Literal["rerun", "start", "unknown", "cancel"], reason: str
) -> InDoubtDecision:
    return InDoubtDecision(
        call_id=call.call_id,
        name=call.name,
        effect=call.effect,
        idempotent=call.idempotent,
        action=action,
        reason=reason,
        attempt={"rerun": call.attempts + 1, "start": 1}.get(action, 0),
        idempotency_key=call.idempotency_key,
    )


def resolve_in_doubt(
    state: SessionState,
    *,
    registered: Container[str],
    running: Container[str] = (),
    via: str = "resume",
) -> list[InDoubtDecision]:
    """Decide, by policy, every call a crash left without an outcome.

    Args:
        state: the restored state.
        registered: tool names this process can run.
        running: call ids still running in this process (not in doubt: their result
            will land); they are skipped.
        via: how the session was taken; on ``handoff`` a started call is in flight at
            the source, which hands its outcome over, so it is skipped too.

    Returns:
        One decision per call with status ``requested``, ``started`` or ``in_doubt``,
        in request order.
    """
    out: list[InDoubtDecision] = []
    for call in state.calls.values():
        if call.status not in ("requested", "started", "in_doubt") or call.call_id in running:
            continue
        if via == "handoff" and call.status == "started":
            continue
        never_started = call.status == "requested"
        if never_started and must_not_run(call, state):
            out.append(
                _decision(call, "cancel", "never started, and its generation was interrupted")
            )
        elif call.name not in registered:
            if never_started:
                why = f"never started, and tool {call.name!r} is not registered here"
                out.append(_decision(call, "cancel", why))
            else:
                why = f"tool {call.name!r} is not registered in this process"
                out.append(_decision(call, "unknown", why))
        elif never_started:
            why = "requested but never started: it cannot have taken effect"
            out.append(_decision(call, "start", why))
        elif call.effect == "read":
            out.append(_decision(call, "rerun", "a read: safe to run again"))
        elif call.idempotent:
            why = "an idempotent write: re-run with the same idempotency key"
            out.append(_decision(call, "rerun", why))
        else:
            why = "a non-idempotent write is never re-run; verify with the caller"
            out.append(_decision(call, "unknown", why))
    return out
