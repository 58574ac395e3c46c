"""Why an owner lost a session: the cause a takeover or an expiry journals. Pure.

A resume records it in ``SessionResumed.cause`` and the sweep in
``SessionExpiredEvent.cause``, so an archive record's health class is read from the
journal rather than guessed afterwards (see :mod:`callstate.archive.health`).
"""

from __future__ import annotations

from typing import Final, Literal

from ..journal.state import SessionState

__all__ = ["LOST_CAUSES", "LostCause", "lost_cause"]

LostCause = Literal["ended", "lease_expired", "link_lost", "released", "taken_over", "idle"]
LOST_CAUSES: Final[tuple[LostCause, ...]] = (
    "ended",
    "lease_expired",
    "link_lost",
    "released",
    "taken_over",
    "idle",
)


def lost_cause(
    state: SessionState,
    *,
    lease_owner: str | None,
    lease_until: float,
    now: float,
    resumed: bool,
) -> LostCause:
    """Why the owner of ``state`` (as stored before the claim) lost it at ``now``.

    In order: the call had ``ended``; the owner's lease had lapsed (``lease_expired``:
    its worker stopped heartbeating); the caller's link was down (``link_lost``); the
    owner let go without ending (``released``); else a live owner lost it to a resume
    (``taken_over``) or, for an expiry, the caller went quiet (``idle``).

    Args:
        state: the session as its last owner left it.
        lease_owner: the owner holding the lease before the claim (None: released).
        lease_until: when that lease ran out.
        now: the moment of the takeover or expiry.
        resumed: a resume took it (True) or the sweep expired it (False).
    """
    if state.status == "ended":
        return "ended"
    if lease_owner is not None and lease_until <= now:
        return "lease_expired"
    if state.on_hold:
        return "link_lost"
    if lease_owner is None:
        return "released"
    return "taken_over" if resumed else "idle"
