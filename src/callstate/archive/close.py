"""Closing a call: insert its archive record (and those of earlier runs of the session
without one), then schedule its follow-ups.

Each step is safe to repeat, so a process killed between them (the kill points
``archive.end_durable``, ``archive.inserted``, ``archive.scheduled``) is repaired by
whoever closes the session next: the owner of a ring-back's continuation, or the sweep
expiring the session. A leg whose process died after its end was durable but before
its record was written gets the record rebuilt from the journal; a record inserted but
whose follow-ups were never scheduled gets those the store has no entry for (one is
stored under its record's id and callback name; one already stored, run or cancelled is
left alone, so none runs twice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..journal import events as ev
from ..journal.sealed import open_event
from ..storage.killpoints import kill_point
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
    earlier runs: those a takeover superseded, and those that ended before a ring-back
    (rebuilt from the journal: a takeover writes nothing to the archive, so a resume
    stays fast and a crash loses no record; an ended run's own write is kept when it
    landed). Schedules follow-ups for ``record``; when it was already stored, those missing
    (the close that stored it may have died before scheduling). Returns whether it was
    new.
    """
    if was_taken_over(state):
        sid = state.session_id
        raw = await archive.store.read_events(sid)
        events = (open_event(ev.decode_event(r), archive.sealer, session_id=sid) for r in raw)
        for earlier in superseded_records(events, before_seq=state.run_seq + 1, ended=True):
            await archive.insert(earlier)
    new = await archive.insert(record)
    kill_point("archive.inserted")
    if new:
        await followups.schedule(record)
    elif followups.callbacks and (stored := await archive.get(record.record_id)) is not None:
        await followups.schedule(stored, missing=True)  # due as the stored record says
    kill_point("archive.scheduled")
    return new


async def archive_ended(
    archive: Archive, followups: FollowUps, state: SessionState, *, now: float
) -> bool:
    """Archive the call whose end ``state`` records (see :func:`archive_run`)."""
    kill_point("archive.end_durable")
    record = build_record(state, outcome=ended_outcome(state), closed_at=now)
    return await archive_run(archive, followups, state, record)
