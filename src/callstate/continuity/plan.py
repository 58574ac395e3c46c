"""Recovery: the resume rules, the ``Preflight`` answer, and the pure recovery planner
with its resume note.

Resume rules (:mod:`callstate.continuity.resume` runs them for the keeper's
``preflight``, ``resume`` and ``resume_caller``):

- A session is resumable until ``last_interaction_at + resume_window``; after that
  ``preflight`` answers ``expired`` and ``resume`` raises ``SessionExpired`` (and
  expires the session, once: see :mod:`callstate.continuity.sweep`).
- A token (see :mod:`callstate.continuity.tokens`) resumes its session while its own
  expiry has not passed, the window is open, and its epoch is at most the session's
  current epoch; a caller-bound token presented with ``caller=`` must match that caller.
- A token never takes the call from a newer or live owner. Every resume hands out a
  fresh token (``session.token``); a token from before a handoff or before another
  client's resume by token is superseded (``TokenSuperseded``, preflight
  ``superseded``). A token for an ended call is refused (``CallEnded``, ``ended``)
  unless the keeper has ``resume_after_end=True``. While the owner holds a live lease
  and its link is up (no ``connection_lost`` since it took over) the session is
  active in another tab (``SessionActive``, ``active``) unless the resume asks for
  ``takeover=True``.
- Resume by session id (trusted server code) and by caller id (a phone ring-back)
  skip the token rules.

The plan itself is :func:`plan`, a pure function over a ``SessionState`` and the
in-doubt resolutions made when the session was taken over.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Any, Final, Literal

import msgspec

from ..journal.context import build_messages, conversation_of
from ..journal.state import TERMINAL, SessionState, ToolCall
from ..tools.reconcile import InDoubtDecision
from ..tools.registry import ToolOutcome

__all__ = [
    "InDoubtCall",
    "OwedResult",
    "Preflight",
    "RecoveryPlan",
    "plan",
    "resume_note",
]

PreflightStatus = Literal[
    "resumable", "expired", "unknown", "invalid", "ended", "superseded", "active"
]
Resolution = Literal["rerun", "start", "unknown", "cancel", "unresolved"]

_QUOTE_CHARS: Final = 120
_CLOSING: Final = "Do not greet the caller again; continue from where the conversation stopped."


class Preflight(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``keeper.preflight(token)``: can this be resumed, and until when.

    ``status`` is ``resumable``; or why not: ``expired``, ``unknown``, ``invalid``,
    ``ended`` (the call ended), ``superseded`` (a handoff or another client's resume
    took the call since the token) or ``active`` (live in another tab: a resume with
    ``takeover=True`` would take it).
    """

    status: PreflightStatus
    session_id: str | None = None
    agent: str | None = None
    epoch: int | None = None
    expires_at: float | None = None
    reason: str = ""

    @property
    def resumable(self) -> bool:
        """True when ``keeper.resume`` would take the session now."""
        return self.status == "resumable"


class InDoubtCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call the drop left between start and result, and how it was resolved.

    ``resolution`` is the in-doubt decision (``reconcile.InDoubtDecision.action``):
    ``rerun`` (run again with the same idempotency key), ``start`` (it never
    started, so it starts now), ``unknown`` (a write that must not run twice: verify
    with the caller), ``cancel`` (never started and must not), or ``unresolved``
    (nothing decided it). ``status`` is the call's status when the plan was made.
    """

    call_id: str
    name: str
    effect: str
    idempotent: bool
    resolution: Resolution
    status: str
    result: Any = None
    error: str | None = None


class OwedResult(msgspec.Struct, frozen=True, kw_only=True):
    """A finished call whose spoken delivery is still owed to the caller."""

    call_id: str
    name: str
    effect: str
    status: str
    result: Any = None
    error: str | None = None
    action: Literal["deliver", "announce"] = "deliver"


class RecoveryPlan(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """Everything a resumed agent needs to continue instead of starting over.

    ``messages`` is the context to rebuild (OpenAI-format); ``resume_note`` a short
    instruction for the model; the other fields the same facts as data. ``messages``
    is built on first use and is not a struct field: encoding a plan (``msgspec``)
    leaves it out, so encode ``plan.context()`` alongside where the messages are needed.

    ``owed_to_model`` are the outcomes no model context had been given when the plan
    was made (``messages`` carries them: a context seeded from the plan has them);
    ``running`` the ids of calls with no outcome yet (re-runs, calls still running in a
    handoff's source): their outcomes land later, through ``session.on_outcome``.
    """

    session_id: str
    agent: str
    epoch: int
    via: str
    gap_s: float
    in_doubt: list[InDoubtCall] = []
    owed: list[OwedResult] = []
    unspoken: str = ""
    partial: str = ""
    userdata: dict[str, Any] = {}
    resume_note: str = ""
    owed_to_model: list[ToolOutcome] = []
    running: list[str] = []
    #: agent speech held while the line was down: never heard by the caller
    held_speech: list[str] = []

    @cached_property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation as it stood when the plan was made, as OpenAI chat messages.

        Built on first use (a long call's context is thousands of messages, which a
        takeover whose agent never reads them need not pay for), then kept.
        """
        conversation = self.__dict__.get("_conversation")
        return [] if conversation is None else build_messages(conversation)

    def context(self, *, system: str | None = None) -> list[dict[str, Any]]:
        """``messages`` with ``system`` first and the resume note last, as system messages."""
        out = [{"role": "system", "content": system}] if system else []
        out.extend(self.messages)
        if self.resume_note:
            out.append({"role": "system", "content": self.resume_note})
        return out


# -- the pure planner ----------------------------------------------------------------


def _unspoken(state: SessionState) -> tuple[str, bool]:
    """The unspoken rest of the interrupted utterance, and whether the drop cut it."""
    uid = state.current_utterance
    if uid is not None:
        for item in reversed(state.items):
            if item.kind == "assistant" and item.id == uid:
                if not item.done and item.text.startswith(item.spoken):
                    rest = item.text[len(item.spoken) :].strip()
                    if rest:
                        return rest, True
                break
    return state.unspoken, False


def _open_and_held(state: SessionState) -> tuple[list[ToolCall], list[ToolCall]]:
    """The calls without a final outcome and those whose spoken delivery is held, in
    one walk over the calls (``state.in_flight`` and ``state.owed`` each walk them all)."""
    running: list[ToolCall] = []
    held: list[ToolCall] = []
    for c in state.calls.values():
        if c.status not in TERMINAL:
            running.append(c)
        if c.delivery == "held":
            held.append(c)
    return running, held


def _in_doubt(
    state: SessionState, decisions: Iterable[InDoubtDecision], running: list[ToolCall]
) -> list[InDoubtCall]:
    seen: dict[str, Resolution] = {}
    for d in decisions:
        if d.call_id in state.calls:
            seen[d.call_id] = d.action
    if not seen:  # nothing resolved them: every call still open is in doubt
        for call in running:
            seen[call.call_id] = call.resolution or "unresolved"
    out = []
    for call_id, resolution in seen.items():
        c = state.calls[call_id]
        out.append(
            InDoubtCall(
                call_id=c.call_id,
                name=c.name,
                effect=c.effect,
                idempotent=c.idempotent,
                resolution=resolution,
                status=c.status,
                result=c.result,
                error=c.error,
            )
        )
    return out


def _quote(text: str) -> str:
    # the note's own punctuation follows the quote, so drop a trailing stop or comma
    text = " ".join(text.split()).rstrip(".,;:")
    if len(text) > _QUOTE_CHARS:
        text = text[: _QUOTE_CHARS - 1].rstrip() + "…"
    return f"“{text}”"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def resume_note(
    *,
    gap_s: float,
    via: str,
    unspoken: str,
    cut_by_drop: bool,
    partial: str,
    in_doubt: list[InDoubtCall],
    owed: list[OwedResult],
    held_speech: Iterable[str] = (),
) -> str:
    """A short instruction telling a model what happened and what it still owes."""
    if via == "handoff":
        opening = "This conversation was handed over to you"
    else:
        opening = f"The line dropped for {_duration(gap_s)}"
    if unspoken and cut_by_drop:
        opening += f" while you were saying {_quote(unspoken)}"
    parts = [opening]
    if partial:
        parts.append(f"the caller had started to say {_quote(partial)}")
    sentences = ["; ".join(parts) + "."]
    if unspoken and not cut_by_drop:
        sentences.append(f"The caller had cut you off before you said {_quote(unspoken)}.")
    held = [_quote(t) for t in held_speech if t.strip()]
    if held:
        sentences.append(
            f"The caller has not heard what you said while the line was down: {', '.join(held)}."
        )
    for c in in_doubt:
        if c.resolution == "unknown":
            sentences.append(
                f"{c.name} may or may not have gone through: verify with the caller "
                "before doing it again."
            )
        elif c.resolution in ("rerun", "start"):
            done = c.status in ("succeeded", "failed", "cancelled")
            how = "was cut off by the drop and" if c.resolution == "rerun" else "had not started;"
            then = f"ran again: {c.status}" if done else "is running again; its result will follow"
            sentences.append(f"{c.name} {how} {then}.")
        elif c.resolution == "cancel":
            sentences.append(f"{c.name} had not started and was cancelled.")
        else:
            sentences.append(f"{c.name} was still running; its outcome is not known yet.")
    if owed:
        tell = ", ".join(
            f"what {o.name} did" if o.action == "announce" else f"the result of {o.name}"
            for o in owed
        )
        sentences.append(f"Still owed to the caller: {tell}.")
    sentences.append(_CLOSING)
    return " ".join(sentences)


def plan(
    state: SessionState, *, gap_s: float, via: str, resolutions: Iterable[InDoubtDecision] = ()
) -> RecoveryPlan:
    """Build the ``RecoveryPlan`` for a session just taken over. Pure: no I/O.

    Args:
        state: the session's state after the takeover (and in-doubt resolution).
        gap_s: seconds between the last interaction and the takeover.
        via: how it was taken over (``resume``, ``takeover``, ``handoff``).
        resolutions: what in-doubt resolution decided (``session.in_doubt``, step 1 of
            the takeover). When empty, every call still open counts as unresolved.
    """
    unspoken, cut_by_drop = _unspoken(state)
    running, held_calls = _open_and_held(state)
    in_doubt = _in_doubt(state, resolutions, running)
    owed = [
        OwedResult(
            call_id=c.call_id,
            name=c.name,
            effect=c.effect,
            status=c.status,
            result=c.result,
            error=c.error,
            action="announce" if c.effect == "write" else "deliver",
        )
        for c in held_calls
    ]
    held = [h.text for h in state.outbox if h.utterance_id is not None]
    note = resume_note(
        gap_s=gap_s,
        via=via,
        unspoken=unspoken,
        cut_by_drop=cut_by_drop,
        partial=state.partial,
        in_doubt=in_doubt,
        owed=owed,
        held_speech=held,
    )
    recovery = RecoveryPlan(
        session_id=state.session_id,
        agent=state.agent,
        epoch=state.epoch,
        via=via,
        gap_s=gap_s,
        in_doubt=in_doubt,
        owed=owed,
        unspoken=unspoken,
        partial=state.partial,
        userdata=dict(state.userdata),
        resume_note=note,
        owed_to_model=[
            ToolOutcome.from_call(c)
            for c in map(state.calls.get, state.owed_to_model)
            if c is not None and c.status in TERMINAL
        ],
        running=[c.call_id for c in running],
        held_speech=held,
    )
    recovery.__dict__["_conversation"] = conversation_of(state)  # for ``messages``
    return recovery
