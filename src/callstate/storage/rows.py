"""The records a store moves: session rows, batches, archive rows, follow-ups, packages.

Plain msgspec structs, no I/O; the ``Store`` protocol (``base``) reads and writes them.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ArchiveRow",
    "Batch",
    "FollowUp",
    "FollowUpRun",
    "Loaded",
    "PackageMove",
    "PackageRow",
    "SessionRecord",
]


class SessionRecord(msgspec.Struct, kw_only=True):
    """What a store keeps about one session besides its journal."""

    session_id: str
    epoch: int
    seq: int = 0
    agent: str = ""
    status: str = "active"
    caller_hash: str | None = None
    created_at: float = 0.0
    last_interaction_at: float = 0.0
    lease_owner: str | None = None
    lease_until: float = 0.0
    snapshot_seq: int = 0


class PackageRow(msgspec.Struct, kw_only=True):
    """A stored handoff package and where it stands."""

    package_id: str
    session_id: str
    data: bytes
    status: str = "offered"  # offered | accepted | reclaimed
    created_at: float = 0.0


class PackageMove(msgspec.Struct, frozen=True, kw_only=True):
    """A handoff package's status change that must go with a claim (``Store.claim``)."""

    package_id: str
    from_status: str
    to_status: str


class Batch(msgspec.Struct, kw_only=True):
    """Events of one session to append atomically, with the session's new metadata.

    ``events[i]`` is the encoded event with ``seq == first_seq + i``. The append is
    accepted only if ``epoch`` equals the stored epoch and ``first_seq`` follows the
    stored ``seq``. ``snapshot`` (if set) is the encoded state at ``snapshot_seq``;
    ``snapshot_parts`` are numbered parts it continues, stored (each replacing the part
    of its number) with the batch: the snapshot format decides what they hold, the store
    keeps every part until the session is purged. ``package`` (if set; only for a store with ``atomic_packages``) is a handoff
    package stored with the events, or not at all.
    """

    session_id: str
    epoch: int
    first_seq: int
    events: list[bytes]
    agent: str = ""
    status: str = "active"
    last_interaction_at: float = 0.0
    snapshot: bytes | None = None
    snapshot_seq: int = 0
    snapshot_parts: dict[int, bytes] = {}
    package: PackageRow | None = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.events) - 1


class Loaded(msgspec.Struct, kw_only=True):
    """A session as stored: metadata, latest snapshot (and every stored part of a
    snapshot, by number), and the events after it."""

    record: SessionRecord
    snapshot: bytes | None
    events: list[bytes]
    snapshot_parts: dict[int, bytes] = {}


class ArchiveRow(msgspec.Struct, kw_only=True):
    """One archived call: indexable columns plus the encoded ``ArchiveRecord``."""

    record_id: str
    session_id: str
    caller_hash: str | None
    ended_at: float
    outcome: str
    data: bytes
    #: what fleet figures count (``ArchiveFigures``); None / 0 on rows archived before
    closed_at: float | None = None
    health: str | None = None
    tools: int = 0  # tool calls the leg made
    in_doubt: int = 0  # of them, left in doubt by a crash
    recover_s: float | None = None  # a recovered leg: seconds the caller was cut off


class FollowUp(msgspec.Struct, kw_only=True):
    """A post-call job due at ``due_at`` unless cancelled by a reconnect."""

    followup_id: str
    session_id: str
    due_at: float
    payload: bytes
    status: str = "pending"  # pending | claimed | done | cancelled
    claimed_by: str | None = None
    claimed_until: float = 0.0
    #: the ledger's word on it beside ``status``: "" | succeeded | retrying | dead | orphaned
    mark: str = ""
    #: how many times a callback was started for it (a lapsed claim's run counts)
    attempts: int = 0
    last_error: str | None = None
    updated_at: float = 0.0

    @property
    def state(self) -> str:
        """The ledger state: pending, running, succeeded, retrying, dead, orphaned or
        cancelled."""
        if self.status == "claimed":
            return "running"
        if self.status == "cancelled":
            return "cancelled"
        if self.status == "done":
            return "dead" if self.mark == "dead" else "succeeded"
        return self.mark if self.mark in ("retrying", "orphaned") else "pending"


class FollowUpRun(msgspec.Struct, kw_only=True):
    """What one follow-up did, as stored: ``data`` is the encoded result (opaque here)."""

    followup_id: str
    session_id: str
    data: bytes
