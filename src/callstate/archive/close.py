"""Closing a call: insert its archive record (and those of runs a takeover superseded),
then schedule its follow-ups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..journal import events as ev
from ..journal.sealed import open_event
from .records import ArchiveRecord, build_record, ended_outcome, superseded_records, was_taken_over

if TYPE_CHECKING:
    from ..journal.state import SessionState
    from .followups import FollowUps
    from .records import Archive

__all__ = ["archive_ended", "archive_run"]


async def archive_run(
    archive: Archive, followups: FollowUps, state: SessionState, record: ArchiveRecord
) -> bool:
    """Insert the record of the run that just closed, and before it the records of
    earlier runs a takeover superseded (rebuilt from the journal: a takeover writes
    nothing to the archive, so a resume stays fast and a crash loses no record).
    Schedules follow-ups for ``record`` when it was new. Returns whether it was.
    """
    if was_taken_over(state):
        sid = state.session_id
        raw = await archive.store.read_events(sid)
        events = (open_event(ev.decode_event(r), archive.sealer, session_id=sid) for r in raw)
        for earlier in superseded_records(events, before_seq=state.run_seq + 1):
            await archive.insert(earlier)
    if not await archive.insert(record):
        return False
    await followups.schedule(record)
    return True


async def archive_ended(
    archive: Archive, followups: FollowUps, state: SessionState, *, now: float
) -> bool:
    """Archive the call whose end ``state`` records (see :func:`archive_run`)."""
    record = build_record(state, outcome=ended_outcome(state), closed_at=now)
    return await archive_run(archive, followups, state, record)
