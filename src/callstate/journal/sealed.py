"""Journal events as stored: caller data sealed on the way out, opened on the way in.

Two events carry caller data: ``SessionStarted`` (the caller id and the userdata keys
named in ``personal``) and ``UserdataPatch`` (values set for a personal key). Sealing
one moves that data into its ``sealed`` field, encrypted for ``"journal:<session id>"``,
and marks it format :data:`~callstate.journal.events.SEALED_VERSION`; opening puts it
back. Every other event passes through untouched, so the hot path pays one type check.
Events written before sealing (plaintext, no ``sealed``) open as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from ..sealing import Sealer, open_personal, seal_personal, split_personal
from . import events as ev

__all__ = ["SEALABLE", "journal_context", "open_event", "seal_event"]

#: The event types that can carry caller data; every other event is stored as recorded.
SEALABLE: Final = frozenset({ev.SessionStarted, ev.UserdataPatch})


def journal_context(session_id: str) -> str:
    """The context a session's journal events are sealed for."""
    return f"journal:{session_id}"


def seal_event(
    event: ev.Event, sealer: Sealer | None, *, session_id: str, personal: Sequence[str] = ()
) -> ev.Event:
    """``event`` as it is stored: its caller data sealed (unchanged without a sealer).

    ``personal`` names the session's personal userdata keys (a ``SessionStarted``
    carries its own).
    """
    if sealer is None:
        return event
    if isinstance(event, ev.SessionStarted):
        if event.caller is None and not event.personal:
            return event
        plain, secret = split_personal(event.userdata, event.personal)
        sealed = seal_personal(
            sealer, caller=event.caller, userdata=secret, context=journal_context(session_id)
        )
        return msgspec.structs.replace(
            event, caller=None, userdata=plain, sealed=sealed, v=ev.SEALED_VERSION
        )
    if isinstance(event, ev.UserdataPatch) and personal:
        plain, secret = split_personal(event.set, personal)
        if not secret:
            return event
        sealed = seal_personal(
            sealer, caller=None, userdata=secret, context=journal_context(session_id)
        )
        return msgspec.structs.replace(event, set=plain, sealed=sealed, v=ev.SEALED_VERSION)
    return event


def open_event(event: ev.Event, sealer: Sealer | None, *, session_id: str) -> ev.Event:
    """A stored event with its sealed caller data opened (plaintext events unchanged).

    Raises:
        SealError: the sealed data does not open (tampered, another session's, under
            an unknown key, or no ``sealer``).
    """
    if isinstance(event, ev.SessionStarted) and event.sealed is not None:
        found = open_personal(sealer, event.sealed, context=journal_context(session_id))
        return msgspec.structs.replace(
            event,
            caller=found.caller,
            userdata={**event.userdata, **found.userdata},
            sealed=None,
            v=ev.FORMAT_VERSION,
        )
    if isinstance(event, ev.UserdataPatch) and event.sealed is not None:
        found = open_personal(sealer, event.sealed, context=journal_context(session_id))
        return msgspec.structs.replace(
            event, set={**event.set, **found.userdata}, sealed=None, v=ev.FORMAT_VERSION
        )
    return event
