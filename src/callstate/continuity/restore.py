"""Rebuilding a session's state from the store, and the error a fenced handle gets."""

from __future__ import annotations

from ..errors import CodecError, StaleEpochError
from ..journal.events import decode_event
from ..journal.sealed import open_event
from ..journal.snapshot import StoredParts, decode_state
from ..journal.state import SessionState, apply
from ..sealing import Sealer
from ..storage.base import Loaded

__all__ = ["fenced_error", "restore_state"]


def restore_state(
    loaded: Loaded, sealer: Sealer | None = None, stored: StoredParts | None = None
) -> SessionState:
    """Rebuild a session's state from its snapshot and the events after it, opening
    sealed caller data with ``sealer``; ``stored`` (empty), when given, is filled with
    the snapshot parts as read, before the events (see ``decode_state``).

    Raises:
        CodecError: the snapshot or an event does not decode, or the journal skips a
            seq; the message names the session and the seq. Nothing stored is changed.
        VersionError: a record was written by a newer format version.
        SealError: sealed caller data does not open (or there is no ``sealer``).
    """
    sid = loaded.record.session_id
    state = SessionState()
    if loaded.snapshot is not None:
        try:
            state = decode_state(loaded.snapshot, sealer, loaded.snapshot_parts, stored)
        except CodecError as exc:
            seq = loaded.record.snapshot_seq
            msg = f"session {sid!r}: snapshot at seq {seq} cannot be read: {exc}"
            raise type(exc)(msg) from exc  # a VersionError stays a VersionError
    for raw in loaded.events:
        expected = state.seq + 1
        try:
            event = open_event(decode_event(raw), sealer, session_id=sid)
        except CodecError as exc:
            msg = f"session {sid!r}: event at seq {expected} cannot be read: {exc}"
            raise type(exc)(msg) from exc
        if event.seq != expected:
            msg = f"session {sid!r}: the journal holds seq {event.seq} where seq {expected} belongs"
            raise CodecError(msg)
        apply(state, event)
    return state


def fenced_error(session_id: str, epoch: int, current: int) -> StaleEpochError:
    """The error a handle gets once a newer owner holds its session."""
    msg = f"session {session_id!r} was taken over at epoch {current}; this handle (epoch {epoch}) is fenced"
    return StaleEpochError(msg, session_id=session_id, epoch=epoch, current_epoch=current)
