"""The call archive: insert-only ``ArchiveRecord``\\ s and the post-call follow-ups.

``records`` builds one record per call from the journal and reads the archive;
``followups`` schedules and runs ``keeper.on_call_complete`` callbacks, durably.
"""

from .records import ArchiveRecord

__all__ = ["ArchiveRecord"]
