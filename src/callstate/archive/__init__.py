"""The call archive: insert-only ``ArchiveRecord``\\ s and the post-call follow-ups.

``records`` builds one record per leg of a call from the journal and reads the archive;
``health`` derives each record's health class from the journaled run; ``calls``
assembles a whole call (every leg, earlier follow-ups' results) as a ``CallRecord``; ``close`` archives a leg that closed; ``followups`` schedules and runs
``keeper.on_call_complete`` callbacks, durably.
"""

from .calls import CallRecord, FollowUpResult
from .health import Health
from .records import ArchiveRecord

__all__ = ["ArchiveRecord", "CallRecord", "FollowUpResult", "Health"]
