"""Keeper-side resume: the checks behind ``preflight``/``resume``/``resume_caller``,
token issuing, and step 2 of a takeover. The rules are in :mod:`callstate.continuity.plan`;
these functions do the I/O (one store read for a check, two when a token must be
checked against the journal; never taking ownership).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..errors import (
    CallEnded,
    CallstateError,
    ConfigError,
    SessionActive,
    SessionExpired,
    SessionNotFound,
    TokenError,
    TokenSuperseded,
)
from ..journal.snapshot import StoredParts
from ..storage.base import not_found, storable_text
from .plan import Preflight, plan
from .restore import restore_state
from .tokens import TokenClaims, is_token, issue_token, verify_token

if TYPE_CHECKING:
    from ..archive.followups import FollowUps
    from ..journal.state import SessionState
    from ..runtime.handle import Handle
    from ..runtime.host import Host
    from ..storage.base import SessionRecord
    from ..tools.reconcile import InDoubtDecision
    from .plan import RecoveryPlan
    from .sweep import Sweeper

__all__ = [
    "check_claims",
    "check_resumable",
    "continue_run",
    "find_caller_session",
    "fresh_token",
    "load_stored",
    "preflight",
    "refresh_token",
    "refusal",
    "session_token",
    "Stored",
]


class Stored(NamedTuple):
    """A session as one load read it: the record then, the state folded from it, and
    the snapshot parts it read (what an owner taking over from this load has stored)."""

    record: SessionRecord
    state: SessionState
    parts: StoredParts | None = None


async def _was_archived(host: Host, session_id: str) -> bool:
    return bool(await host.store.archive_list(session_id=session_id, limit=1))


async def check_resumable(
    host: Host,
    token_or_id: str,
    *,
    caller: str | None = None,
    expire: Sweeper | None = None,
    takeover: bool = False,
    after_end: bool = False,
) -> tuple[SessionRecord, TokenClaims | None, Stored | None]:
    """The stored record ``token_or_id`` may resume now, after every check, its token's
    claims, and the session as loaded for the checks (None when they needed no load).

    With ``expire`` (a sweeper) a session found past its window is expired on the spot.
    A token is also checked against the session's owner (see :func:`check_claims`);
    ``takeover`` and ``after_end`` relax those checks as there.

    Raises:
        TokenError: the token is malformed, tampered, signed by an unknown key,
            bound to another caller, or from an epoch the session never reached.
        CallEnded / TokenSuperseded / SessionActive: see :func:`check_claims`.
        SessionExpired: the token or the session's resume window has expired.
        SessionNotFound: no such session (and none was ever archived).
    """
    if not isinstance(token_or_id, str) or not token_or_id:
        msg = f"token_or_id must be a resume token or a session id, got {token_or_id!r:.60}"
        raise TokenError(msg)
    now = host.clock.now()
    claims: TokenClaims | None = None
    if is_token(token_or_id):
        claims = verify_token(token_or_id, host.secrets)
        sid = claims.session_id
        if now > claims.expires_at:
            msg = f"resume token for session {sid!r} expired at {claims.expires_at:.0f}"
            raise SessionExpired(msg, session_id=sid)
    else:
        sid = token_or_id
    if caller is not None and not storable_text(caller):
        msg = f"caller must be text without NUL or lone surrogates, got {caller!r:.60}"
        raise TokenError(msg)
    if not storable_text(sid):  # no store holds such an id: none was ever created
        raise not_found(sid)
    rec = await host.store.get(sid)
    if rec is None:
        if await _was_archived(host, sid):
            msg = f"session {sid!r} expired and its resume state is gone (see its archive)"
            raise SessionExpired(msg, session_id=sid)
        raise not_found(sid)
    if claims is not None:
        if caller is not None and not claims.matches_caller(caller, host.secrets):
            msg = f"resume token for session {sid!r} is bound to another caller"
            raise TokenError(msg)
        if claims.epoch > rec.epoch:
            msg = f"resume token `epoch` {claims.epoch} is ahead of session {sid!r} (epoch {rec.epoch})"
            raise TokenError(msg)
    deadline = rec.last_interaction_at + host.resume_window
    if rec.status == "expired" or now > deadline:
        if expire is not None and rec.status != "expired":
            await expire.expire_session(rec, now)
        msg = f"session {sid!r} expired: last interaction {now - rec.last_interaction_at:.0f}s ago, window {host.resume_window:.0f}s"
        raise SessionExpired(msg, session_id=sid)
    stored = None
    if claims is not None:
        stored = await check_claims(
            host, rec, claims, now=now, takeover=takeover, after_end=after_end
        )
    return rec, claims, stored


async def load_stored(host: Host, session_id: str) -> Stored:
    """The session as one load reads it: its record, its state and the parts read."""
    loaded = await host.store.load(session_id)
    parts = StoredParts()
    return Stored(loaded.record, restore_state(loaded, host.sealer, parts), parts)


async def check_claims(
    host: Host,
    rec: SessionRecord,
    claims: TokenClaims,
    *,
    now: float,
    takeover: bool = False,
    after_end: bool = False,
) -> Stored | None:
    """Refuse a verified token that would take the call from a newer or live owner;
    returns the session as loaded for that, if it was.

    A token resumes its session only when:

    - the call has not ended (unless ``after_end``: ``Keeper(resume_after_end=True)``);
    - no handoff was accepted and no other client resumed by token since the token's
      epoch (each of those hands out a fresh token; older ones are superseded);
    - the session's owner does not hold a live lease with its link up (no
      ``connection_lost`` since it took over): that is another tab, unless
      ``takeover`` asks to take the call from it anyway.

    The journal is read only when the token is older than the session's epoch or the
    owner's lease is live.

    Raises:
        CallEnded: the call ended and the keeper does not resume ended calls by token.
        TokenSuperseded: a handoff or another client's resume took the call since.
        SessionActive: the session is live in another tab (pass ``takeover=True``).
    """
    sid = rec.session_id
    if rec.status == "ended" and not after_end:
        msg = (
            f"session {sid!r} ended: its resume tokens no longer resume it "
            "(Keeper(resume_after_end=True) allows it)"
        )
        raise CallEnded(msg, session_id=sid)
    stored: Stored | None = None
    if claims.epoch < rec.epoch:
        stored = await load_stored(host, sid)
        if stored.state.token_epoch > claims.epoch:
            msg = (
                f"resume token `epoch` {claims.epoch} of session {sid!r} is superseded: "
                f"a handoff or another client's resume took the call at epoch "
                f"{stored.state.token_epoch}; resume with the token that resume handed out"
            )
            raise TokenSuperseded(msg, session_id=sid, epoch=claims.epoch, current_epoch=rec.epoch)
    live = rec.lease_owner is not None and rec.lease_until > now
    if live and not takeover and rec.status in ("active", "offered"):
        stored = stored or await load_stored(host, sid)
        if not stored.state.on_hold:
            msg = (
                f"session {sid!r} is active in another tab: its owner holds a live lease "
                "and its link is up; resume(token, takeover=True) takes it over"
            )
            raise SessionActive(msg, session_id=sid)
    return stored


def refusal(exc: Exception) -> Preflight | None:
    """The ``Preflight`` answer for what ``resume`` refused with ``exc`` (None when
    ``exc`` is no such refusal, e.g. a storage error or a lost race for the claim).

    The same mapping ``preflight`` answers with, so a client that tries ``resume``
    first reads the refusal exactly as it would have read a preflight.
    """
    if isinstance(exc, CallEnded):
        return Preflight(status="ended", session_id=exc.session_id, reason=str(exc))
    if isinstance(exc, TokenSuperseded):
        return Preflight(
            status="superseded", session_id=exc.session_id, epoch=exc.epoch, reason=str(exc)
        )
    if isinstance(exc, SessionActive):
        return Preflight(status="active", session_id=exc.session_id, reason=str(exc))
    if isinstance(exc, TokenError):
        return Preflight(status="invalid", reason=str(exc))
    if isinstance(exc, SessionExpired):
        return Preflight(status="expired", session_id=exc.session_id, reason=str(exc))
    if isinstance(exc, SessionNotFound):
        return Preflight(status="unknown", session_id=exc.session_id, reason=str(exc))
    return None


async def preflight(
    host: Host, token_or_id: str, *, caller: str | None = None, after_end: bool = False
) -> Preflight:
    """Whether ``token_or_id`` can be resumed now; never takes ownership, never raises
    for bad input (the answer says ``invalid``, ``ended``, ``superseded`` or
    ``active`` and why: see :func:`refusal`)."""
    try:
        rec, claims, _ = await check_resumable(
            host, token_or_id, caller=caller, after_end=after_end
        )
    except CallstateError as exc:
        answer = refusal(exc)
        if answer is None:  # not a refusal (a storage error...): the caller hears it
            raise
        return answer
    expires_at = rec.last_interaction_at + host.resume_window
    if claims is not None:
        expires_at = min(expires_at, claims.expires_at)
    return Preflight(
        status="resumable",
        session_id=rec.session_id,
        agent=rec.agent,
        epoch=rec.epoch,
        expires_at=expires_at,
    )


async def find_caller_session(host: Host, caller: str, *, scan: int = 10) -> SessionRecord | None:
    """The caller's most recently active session that is still resumable, or None.

    The index holds keyed hashes only; every configured secret is tried, so entries
    written before a secret rotation are still found.
    """
    if not storable_text(caller):  # never indexed: start() refuses such a caller
        return None
    now = host.clock.now()
    entries: dict[str, float] = {}
    for caller_hash in host.caller_hashes(caller):
        for sid, at in await host.store.lookup_caller(caller_hash):
            entries[sid] = max(at, entries.get(sid, at))
    best: SessionRecord | None = None
    for sid, _ in sorted(entries.items(), key=lambda kv: kv[1], reverse=True)[:scan]:
        rec = await host.store.get(sid)
        if rec is None or rec.status == "expired":
            continue
        if now > rec.last_interaction_at + host.resume_window:
            continue
        if best is None or rec.last_interaction_at > best.last_interaction_at:
            best = rec
    return best


def session_token(
    host: Host, session: Handle, *, ttl: float | None = None, bind_caller: bool = True
) -> str:
    """A resume token for ``session`` at its current epoch (see ``Session.resume_token``)."""
    state = session.state
    caller = state.caller if bind_caller else None
    return _issue(host, state.session_id, state.epoch, caller, ttl)


def _issue(host: Host, session_id: str, epoch: int, caller: str | None, ttl: float | None) -> str:
    if not host.secrets:
        msg = "resume tokens need a secret: pass Keeper(secret=...) (16+ bytes) to sign them"
        raise ConfigError(msg)
    life = host.token_ttl if ttl is None else ttl
    if not life > 0:
        msg = f"ttl must be > 0 seconds, got {ttl!r}"
        raise ConfigError(msg)
    now = host.clock.now()
    return issue_token(
        host.secrets[0],
        session_id=session_id,
        epoch=epoch,
        expires_at=now + life,
        issued_at=now,
        caller=caller,
    )


async def refresh_token(
    host: Host, token: str, *, ttl: float | None = None, after_end: bool = False
) -> str:
    """A fresh token for the session and epoch ``token`` names, with a new expiry and
    the same caller binding. It takes nothing, so a session live in another tab is
    fine; every other refusal of ``resume`` applies.

    Raises:
        TokenError: not a valid token (a session id included), and what
            :func:`check_resumable` raises (CallEnded, TokenSuperseded, SessionExpired,
            SessionNotFound); ConfigError without a secret or for a bad ``ttl``.
    """
    if not (isinstance(token, str) and is_token(token)):
        msg = "a token refresh takes a resume token (cs1.…), not a session id"
        raise TokenError(msg)
    _, claims, _ = await check_resumable(host, token, takeover=True, after_end=after_end)
    if claims is None:  # a token always has claims; kept for the type checker
        msg = "resume token did not verify"
        raise TokenError(msg)
    caller = (
        (await load_stored(host, claims.session_id)).state.caller if claims.caller_bound else None
    )
    return _issue(host, claims.session_id, claims.epoch, caller, ttl)


def fresh_token(host: Host, session: Handle, *, bind: bool = True) -> str | None:
    """The token a session just taken over hands its client: its new epoch, caller-bound
    unless ``bind`` is false; None when the keeper has no secret to sign with."""
    return session_token(host, session, bind_caller=bind) if host.secrets else None


async def continue_run(
    followups: FollowUps,
    session: Handle,
    *,
    gap: float,
    via: str,
    in_doubt: list[InDoubtDecision],
) -> RecoveryPlan:
    """Step 2 of a takeover, once the session is owned, durable and its in-doubt calls
    resolved (``in_doubt``, step 1): cancel the follow-ups a reconnect makes moot and
    build the ``RecoveryPlan``. (The run the takeover ended is archived later, from the
    journal: see :mod:`callstate.archive`.)

    A handoff's accept or reclaim cancels nothing: the caller did not come back, they
    never left. Follow-ups are due only after a call closed, and the resume that made
    the offering session live again already cancelled those."""
    if via not in ("handoff", "reclaim"):
        await followups.cancel(session.id)
    return plan(session.state, gap_s=gap, via=via, resolutions=in_doubt)
