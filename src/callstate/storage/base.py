"""The async ``Store`` protocol every backend implements, and its optional abilities.

The records it moves live in ``rows``, the checks every backend shares in ``checks``,
the stepwise claim of stores without ``atomic_packages`` in ``claims``; each name is
importable from here too.

A store holds, per session, a row of metadata (epoch, seq, lease, status), a journal of
encoded events with gap-free ``seq``, and at most one snapshot; beside them a keyed-hash
caller index, an insert-only archive, follow-ups, handoff packages and a migrations
table. Every backend passes ``callstate.testing.conformance``.

``FollowUpLog`` is an optional ability beside ``Store`` (every shipped backend has it):
the insert-once log of what follow-ups did, read back by the next follow-up of the
same call. Like the archive it is never purged. ``FollowUpLedger`` is another (every
shipped backend has it too): attempts, the last error and a ledger state per follow-up,
listed and retried by an operator.

A store whose ``atomic_packages`` attribute is true (memory, SQLite) also stores a
``Batch.package`` in the same transaction as the batch's events; the others refuse
such a batch, and a handoff offer stores its package with ``package_put`` after the
offer is durable instead.

A store whose ``atomic_claims`` attribute is true (PostgreSQL; Redis without
``wait_aof``) has no
``atomic_packages`` but takes a ``claim`` with a ``then`` batch and no package in one
step, all or nothing, as a store with ``atomic_packages`` takes any claim: a takeover
then claims and records its ownership event in one durable write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import CallstateError
from .checks import check_batch, not_found, refuse_packages, stale_claim, storable_text
from .claims import (
    ClaimSteps,
    StepwiseClaim,
    batch_alone,
    claim_in_steps,
    move_package,
    new_claim_id,
    package_not_in,
)
from .rows import (
    ArchiveRow,
    Batch,
    FollowUp,
    FollowUpRun,
    Loaded,
    PackageMove,
    PackageRow,
    SessionRecord,
)

__all__ = [
    "ArchiveRow",
    "Batch",
    "FollowUp",
    "FollowUpLedger",
    "FollowUpLog",
    "FollowUpRun",
    "Loaded",
    "PackageMove",
    "PackageRow",
    "SessionRecord",
    "Store",
    # the records, checks and stepwise claims live beside it; importable from here too
    "ClaimSteps",
    "StepwiseClaim",
    "batch_alone",
    "check_batch",
    "claim_in_steps",
    "move_package",
    "new_claim_id",
    "not_found",
    "package_not_in",
    "refuse_packages",
    "stale_claim",
    "storable_text",
]


@runtime_checkable
class FollowUpLog(Protocol):
    """A store that keeps what follow-ups did (optional; every shipped store does)."""

    async def followup_record(self, run: FollowUpRun) -> None:
        """Store ``run`` once: a run already stored under its ``followup_id`` is kept
        (a retried write never replaces the first)."""

    async def followup_runs(self, session_id: str) -> list[FollowUpRun]:
        """Every stored run of the session's follow-ups, in no particular order."""


@runtime_checkable
class FollowUpLedger(Protocol):
    """A store that keeps each follow-up's attempts and last error (optional; every
    shipped store does)."""

    async def followup_start(self, followup_id: str, owner: str, now: float) -> int:
        """Count a start of the follow-up ``owner`` holds; returns its attempt number (0
        when ``owner`` no longer holds it). Sent again for the same claim (a retry), it
        counts once."""

    async def followup_settle(
        self,
        followup_id: str,
        owner: str,
        *,
        mark: str,
        error: str | None,
        now: float,
        retry_at: float | None = None,
    ) -> bool:
        """End ``owner``'s claim: due again at ``retry_at``, or done when it is None;
        ``mark`` and ``error`` are kept. False if ``owner`` no longer holds the claim."""

    async def followup_get(self, followup_id: str) -> FollowUp | None:
        """One follow-up, in any state."""

    async def followup_list(self, limit: int = 100) -> list[FollowUp]:
        """Follow-ups in any state, latest due first."""

    async def followup_retry(self, followup_id: str, now: float) -> bool:
        """Make a dead, orphaned or retrying follow-up due at ``now`` (its attempts kept);
        False when it is in any other state or unknown."""


@runtime_checkable
class Store(Protocol):
    """Async storage for sessions. All methods are safe to call concurrently."""

    url: str

    async def open(self) -> None:
        """Connect and run pending migrations."""

    async def close(self) -> None:
        """Release connections; further calls fail."""

    async def schema_version(self) -> int:
        """The highest migration applied."""

    # -- sessions and journal --------------------------------------------------------

    async def create(self, record: SessionRecord, first: Batch) -> None:
        """Insert a new session with its first events (and ``first.package``, if any).

        Raises:
            ConflictError: a session with this id, or a package with ``first.package``'s
                id, already exists.
            ConfigError: ``first`` carries a package and the store has no
                ``atomic_packages``.
        """

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        """Group commit: append each batch atomically, all in one round trip.

        Returns one entry per batch: ``None`` when written, else the error that
        refused it (``StaleEpochError``, ``SessionNotFound``, ``ConflictError``, e.g.
        for a package id already stored); a refused batch writes nothing and does not
        affect the others. A store without ``atomic_packages`` raises ``ConfigError``
        for a batch carrying a package.

        Raises:
            StorageError: the store could not be reached; nothing was acknowledged.
        """

    async def load(self, session_id: str) -> Loaded:
        """The session's record, latest snapshot and the events after it.

        Raises:
            SessionNotFound: no such session.
        """

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        """Encoded events with ``seq > after_seq``, in order (the full journal by default)."""

    async def get(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None."""

    async def list_sessions(
        self,
        *,
        statuses: Sequence[str] | None = None,
        lease_before: float | None = None,
        interaction_before: float | None = None,
        limit: int = 1000,
    ) -> list[SessionRecord]:
        """Sessions matching every given filter, newest interaction first."""

    async def claim(
        self,
        session_id: str,
        expected_epoch: int,
        owner: str,
        lease_until: float,
        *,
        package: PackageMove | None = None,
        then: Batch | None = None,
        claim_id: str | None = None,
    ) -> int:
        """Take ownership: set epoch to ``expected_epoch + 1`` and the lease, atomically.

        With ``package``, that package moves from its ``from_status`` to its
        ``to_status`` with the claim; with ``then``, that batch (written at the new
        epoch) is appended right after it. A store with ``atomic_packages`` does all of
        it in one transaction or nothing; the others go step by step (package, claim,
        batch), so a failure between steps leaves the earlier ones done (a repeated
        ``Keeper.accept``/``reclaim`` finishes that).

        The store keeps ``claim_id`` (one of its own per call when None) with the new
        epoch: a claim sent again with the same id, e.g. a retry after a reply was
        lost, that finds the session at ``expected_epoch + 1`` under that id returns
        that epoch instead of raising ``StaleEpochError``. Give one id per logical
        claim, never the same to two claimers.

        Raises:
            HandoffStateError: the package is not in ``from_status``.
            SessionNotFound: no such session.
            StaleEpochError: the stored epoch is not ``expected_epoch``.
            ConflictError: ``then`` does not start right after the stored seq.
        """

    async def renew_leases(self, owner: str, session_ids: Sequence[str], until: float) -> list[str]:
        """Extend ``owner``'s leases; returns the ids whose lease ``owner`` still holds."""

    async def release_lease(self, session_id: str, owner: str) -> None:
        """Drop ``owner``'s lease on the session, if it holds it."""

    async def purge(self, session_id: str) -> None:
        """Delete the session's resume state (record, journal, snapshot, caller entries).

        The archive, follow-ups and packages are kept.
        """

    # -- caller index ----------------------------------------------------------------

    async def index_caller(self, caller_hash: str, session_id: str, at: float) -> None:
        """Record that ``session_id`` belongs to the caller (keyed hash, never clear)."""

    async def lookup_caller(self, caller_hash: str) -> list[tuple[str, float]]:
        """The caller's sessions as ``(session_id, at)``, most recent first."""

    # -- archive (insert-only) -------------------------------------------------------

    async def archive_insert(self, row: ArchiveRow) -> None:
        """Insert one archive row.

        Raises:
            ConflictError: a row with this ``record_id`` exists; it is left as it was.
        """

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        """One archive row, or None."""

    async def archive_list(
        self,
        *,
        session_id: str | None = None,
        caller_hash: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ArchiveRow]:
        """Archive rows matching every given filter, newest first."""

    # -- follow-ups ------------------------------------------------------------------

    async def followup_put(self, followup: FollowUp) -> None:
        """Schedule a follow-up (replacing a pending one with the same id)."""

    async def followup_cancel(self, session_id: str) -> int:
        """Cancel the session's pending follow-ups; returns how many."""

    async def followup_claim(
        self, now: float, owner: str, claim_for: float, limit: int = 10
    ) -> list[FollowUp]:
        """Atomically claim due follow-ups (pending, or claimed with a lapsed claim)."""

    async def followup_done(self, followup_id: str, owner: str) -> bool:
        """Mark a claimed follow-up done; False if ``owner`` no longer holds the claim."""

    # -- handoff packages ------------------------------------------------------------

    async def package_put(self, row: PackageRow) -> None:
        """Store an offered package.

        Raises:
            ConflictError: a package with this id exists.
        """

    async def package_get(self, package_id: str) -> PackageRow | None:
        """A stored package, or None."""

    async def package_transition(self, package_id: str, from_status: str, to_status: str) -> bool:
        """Move a package from ``from_status`` to ``to_status`` atomically; False if it was not there."""
