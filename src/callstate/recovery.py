"""Recovery: preflight checks, the pure recovery planner and the resume note.

Resume rules (the keeper's ``preflight``/``resume``/``resume_caller`` run these):

- A session is resumable until ``last_interaction_at + resume_window``; after that
  ``preflight`` answers ``expired`` and ``resume`` raises ``SessionExpired`` (and
  expires the session, once: see :mod:`callstate.sweep`).
- A token (see :mod:`callstate.tokens`) resumes its session while its own expiry has
  not passed, the window is open, and its epoch is at most the session's current
  epoch. So a token stays valid across later resumes (a page that reloads twice
  works); each resume hands out a fresh one through ``session.resume_token()``.
- A caller-bound token presented with ``caller=`` must match that caller.

The plan itself is :func:`plan`, a pure function over a ``SessionState`` and the
in-doubt resolutions made when the session was taken over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from .context import build_messages
from .errors import ConfigError, SessionExpired, SessionNotFound, TokenError
from .reconcile import InDoubtDecision
from .state import SessionState
from .tokens import TokenClaims, is_token, issue_token, verify_token

if TYPE_CHECKING:
    from .keeper import Keeper
    from .session import Session
    from .storage.base import SessionRecord

__all__ = [
    "InDoubtCall",
    "OwedResult",
    "Preflight",
    "RecoveryPlan",
    "check_resumable",
    "continue_run",
    "find_caller_session",
    "plan",
    "preflight",
    "resume_note",
    "session_token",
]

PreflightStatus = Literal["resumable", "expired", "unknown", "invalid"]
Resolution = Literal["rerun", "start", "unknown", "cancel", "unresolved"]

_QUOTE_CHARS: Final = 120
_CLOSING: Final = "Do not greet the caller again; continue from where the conversation stopped."


class Preflight(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``keeper.preflight(token)``: can this be resumed, and until when."""

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


class RecoveryPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a resumed agent needs to continue instead of starting over.

    ``messages`` is the context to rebuild (OpenAI-format); ``resume_note`` a short
    instruction for the model; the other fields the same facts as data.
    """

    session_id: str
    agent: str
    epoch: int
    via: str
    gap_s: float
    messages: list[dict[str, Any]]
    in_doubt: list[InDoubtCall] = []
    owed: list[OwedResult] = []
    unspoken: str = ""
    partial: str = ""
    userdata: dict[str, Any] = {}
    resume_note: str = ""

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


def _in_doubt(state: SessionState, decisions: Iterable[InDoubtDecision]) -> list[InDoubtCall]:
    seen: dict[str, Resolution] = {}
    for d in decisions:
        if d.call_id in state.calls:
            seen[d.call_id] = d.action
    if not seen:  # nothing resolved them: every call still open is in doubt
        for call in state.in_flight:
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
    in_doubt = _in_doubt(state, resolutions)
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
        for c in state.owed
    ]
    note = resume_note(
        gap_s=gap_s,
        via=via,
        unspoken=unspoken,
        cut_by_drop=cut_by_drop,
        partial=state.partial,
        in_doubt=in_doubt,
        owed=owed,
    )
    return RecoveryPlan(
        session_id=state.session_id,
        agent=state.agent,
        epoch=state.epoch,
        via=via,
        gap_s=gap_s,
        messages=build_messages(state),
        in_doubt=in_doubt,
        owed=owed,
        unspoken=unspoken,
        partial=state.partial,
        userdata=dict(state.userdata),
        resume_note=note,
    )


# -- keeper-side checks (I/O: one store read, never taking ownership) -----------------


async def _was_archived(keeper: Keeper, session_id: str) -> bool:
    return bool(await keeper.store.archive_list(session_id=session_id, limit=1))


async def check_resumable(
    keeper: Keeper, token_or_id: str, *, caller: str | None = None, expire: bool = True
) -> tuple[SessionRecord, TokenClaims | None]:
    """The stored record ``token_or_id`` may resume now, after every check.

    With ``expire`` a session found past its window is expired on the spot.

    Raises:
        TokenError: the token is malformed, tampered, signed by an unknown key,
            bound to another caller, or from an epoch the session never reached.
        SessionExpired: the token or the session's resume window has expired.
        SessionNotFound: no such session (and none was ever archived).
    """
    now = keeper.clock.now()
    claims: TokenClaims | None = None
    if is_token(token_or_id):
        claims = verify_token(token_or_id, keeper.secrets)
        sid = claims.session_id
        if now > claims.expires_at:
            msg = f"resume token for session {sid!r} expired at {claims.expires_at:.0f}"
            raise SessionExpired(msg, session_id=sid)
    else:
        sid = token_or_id
    rec = await keeper.store.get(sid)
    if rec is None:
        if await _was_archived(keeper, sid):
            msg = f"session {sid!r} expired and its resume state is gone (see its archive)"
            raise SessionExpired(msg, session_id=sid)
        msg = f"session {sid!r} not found in the store"
        raise SessionNotFound(msg, session_id=sid)
    if claims is not None:
        if caller is not None and not claims.matches_caller(caller, keeper.secrets):
            msg = f"resume token for session {sid!r} is bound to another caller"
            raise TokenError(msg)
        if claims.epoch > rec.epoch:
            msg = f"resume token `epoch` {claims.epoch} is ahead of session {sid!r} (epoch {rec.epoch})"
            raise TokenError(msg)
    deadline = rec.last_interaction_at + keeper.resume_window
    if rec.status == "expired" or now > deadline:
        if expire and rec.status != "expired":
            from .sweep import expire_session

            await expire_session(keeper, rec, now)
        msg = f"session {sid!r} expired: last interaction {now - rec.last_interaction_at:.0f}s ago, window {keeper.resume_window:.0f}s"
        raise SessionExpired(msg, session_id=sid)
    return rec, claims


async def preflight(keeper: Keeper, token_or_id: str, *, caller: str | None = None) -> Preflight:
    """Whether ``token_or_id`` can be resumed now; never takes ownership, never raises
    for bad input (the answer says ``invalid`` and why)."""
    try:
        rec, claims = await check_resumable(keeper, token_or_id, caller=caller, expire=False)
    except TokenError as exc:
        return Preflight(status="invalid", reason=str(exc))
    except SessionExpired as exc:
        return Preflight(status="expired", session_id=exc.session_id, reason=str(exc))
    except SessionNotFound as exc:
        return Preflight(status="unknown", session_id=exc.session_id, reason=str(exc))
    expires_at = rec.last_interaction_at + keeper.resume_window
    if claims is not None:
        expires_at = min(expires_at, claims.expires_at)
    return Preflight(
        status="resumable",
        session_id=rec.session_id,
        agent=rec.agent,
        epoch=rec.epoch,
        expires_at=expires_at,
    )


async def find_caller_session(
    keeper: Keeper, caller: str, *, scan: int = 10
) -> SessionRecord | None:
    """The caller's most recently active session that is still resumable, or None.

    The index holds keyed hashes only; every configured secret is tried, so entries
    written before a secret rotation are still found.
    """
    now = keeper.clock.now()
    entries: dict[str, float] = {}
    for caller_hash in keeper._caller_hashes(caller):
        for sid, at in await keeper.store.lookup_caller(caller_hash):
            entries[sid] = max(at, entries.get(sid, at))
    best: SessionRecord | None = None
    for sid, _ in sorted(entries.items(), key=lambda kv: kv[1], reverse=True)[:scan]:
        rec = await keeper.store.get(sid)
        if rec is None or rec.status == "expired":
            continue
        if now > rec.last_interaction_at + keeper.resume_window:
            continue
        if best is None or rec.last_interaction_at > best.last_interaction_at:
            best = rec
    return best


def session_token(
    keeper: Keeper, session: Session, *, ttl: float | None = None, bind_caller: bool = True
) -> str:
    """A resume token for ``session`` at its current epoch (see ``Session.resume_token``)."""
    if not keeper.secrets:
        msg = "resume tokens need a secret: pass Keeper(secret=...) (16+ bytes) to sign them"
        raise ConfigError(msg)
    life = keeper.token_ttl if ttl is None else ttl
    if not life > 0:
        msg = f"ttl must be > 0 seconds, got {ttl!r}"
        raise ConfigError(msg)
    now = keeper.clock.now()
    state = session.state
    return issue_token(
        keeper.secrets[0],
        session_id=state.session_id,
        epoch=state.epoch,
        expires_at=now + life,
        issued_at=now,
        caller=state.caller if bind_caller else None,
    )


async def continue_run(keeper: Keeper, session: Session, *, gap: float, via: str) -> None:
    """Step 2 of a takeover, once the session is owned, durable and its in-doubt calls
    resolved (``session.in_doubt``, step 1): cancel the follow-ups a reconnect makes
    moot and attach the ``RecoveryPlan``. (The run the takeover ended is archived
    later, from the journal: see :mod:`callstate.archive`.)"""
    await keeper.followups.cancel(session.id)
    # step 1 (tool recovery) leaves its decisions on ``session.in_doubt``
    decisions = getattr(session, "in_doubt", ())
    session.recovery = plan(session.state, gap_s=gap, via=via, resolutions=decisions)
