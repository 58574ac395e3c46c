"""Rows of the SQL stores (SQLite, PostgreSQL): column lists and row → record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from .base import ArchiveRow, FollowUp, SessionRecord

__all__ = [
    "ARCHIVE_COLS",
    "FOLLOWUP_COLS",
    "SESSION_COLS",
    "archive_from_row",
    "archive_values",
    "followup_from_row",
    "session_from_row",
]

SESSION_COLS: Final = (
    "session_id, epoch, seq, agent, status, caller_hash, created_at, "
    "last_interaction_at, lease_owner, lease_until, snapshot_seq"
)
ARCHIVE_COLS: Final = (
    "record_id, session_id, caller_hash, ended_at, outcome, data, "
    "closed_at, health, tools, in_doubt, recover_s"
)
FOLLOWUP_COLS: Final = (
    "followup_id, session_id, due_at, payload, status, claimed_by, claimed_until, "
    "mark, attempts, last_error, updated_at"
)


def session_from_row(row: Sequence[Any]) -> SessionRecord:
    """A ``SessionRecord`` from a row selected as ``SESSION_COLS``."""
    return SessionRecord(
        session_id=row[0],
        epoch=row[1],
        seq=row[2],
        agent=row[3],
        status=row[4],
        caller_hash=row[5],
        created_at=row[6],
        last_interaction_at=row[7],
        lease_owner=row[8],
        lease_until=row[9],
        snapshot_seq=row[10],
    )


def archive_from_row(row: Sequence[Any]) -> ArchiveRow:
    """An ``ArchiveRow`` from a row selected as ``ARCHIVE_COLS`` (any bytes-like data)."""
    return ArchiveRow(
        record_id=row[0],
        session_id=row[1],
        caller_hash=row[2],
        ended_at=row[3],
        outcome=row[4],
        data=bytes(row[5]),
        closed_at=row[6],
        health=row[7],
        tools=row[8],
        in_doubt=row[9],
        recover_s=row[10],
    )


def archive_values(row: ArchiveRow) -> tuple[Any, ...]:
    """``row``'s values in ``ARCHIVE_COLS`` order, for an insert."""
    return (
        row.record_id,
        row.session_id,
        row.caller_hash,
        row.ended_at,
        row.outcome,
        row.data,
        row.closed_at,
        row.health,
        row.tools,
        row.in_doubt,
        row.recover_s,
    )


def followup_from_row(row: Sequence[Any]) -> FollowUp:
    """A ``FollowUp`` from a row selected as ``FOLLOWUP_COLS``."""
    return FollowUp(
        followup_id=row[0],
        session_id=row[1],
        due_at=row[2],
        payload=bytes(row[3]),
        status=row[4],
        claimed_by=row[5],
        claimed_until=row[6],
        mark=row[7],
        attempts=row[8],
        last_error=row[9],
        updated_at=row[10],
    )
