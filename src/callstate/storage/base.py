"""The async ``Store`` protocol every backend implements, and the records it moves.

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
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, cast, runtime_checkable

import msgspec

from ..errors import (
    CallstateError,
    ConfigError,
    ConflictError,
    HandoffStateError,
    SessionNotFound,
)
from .killpoints import kill_point

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


def package_not_in(move: PackageMove, status: str | None) -> HandoffStateError:
    """The error of a claim whose package is not where ``move`` expects it."""
    where = "unknown to the store" if status is None else f"{status}, not {move.from_status}"
    msg = f"handoff package {move.package_id!r:.80} is {where}"
    return HandoffStateError(msg)


async def move_package(store: Store, move: PackageMove) -> None:
    """A claim's package move, as its own first step (stores without ``atomic_packages``).

    Raises:
        HandoffStateError: the package is not in ``move.from_status``.
    """
    if not await store.package_transition(move.package_id, move.from_status, move.to_status):
        row = await store.package_get(move.package_id)
        raise package_not_in(move, None if row is None else row.status)


async def claim_in_steps(
    store: Store,
    claim: Callable[[], Awaitable[int]],
    package: PackageMove | None,
    then: Batch | None,
) -> int:
    """``Store.claim`` as steps, for stores without ``atomic_packages``: move the package,
    run ``claim`` (the store's own claim), append ``then``.

    Each step is safe to send again after a lost reply (a package move carries its own
    transition id, a claim its claim id, an append is recognised by its bytes), so the
    store's retries never see their own earlier step as a competitor's.
    """
    if package is not None:
        await move_package(store, package)
        kill_point("claim.package_moved")
    epoch = await claim()
    kill_point("claim.claimed")
    if then is not None:
        [error] = await store.append([then])
        if error is not None:
            raise error
    return epoch


class StepwiseClaim:
    """``Store.claim`` for a store without ``atomic_packages``: a package move and a
    batch go step by step around the store's own plain claim, ``_claim``.

    A whole claim sent again with its ``claim_id`` after it was done (its package moved,
    its batch stored) returns the same epoch; one interrupted between steps is finished.
    """

    async def _claim(
        self, session_id: str, expected_epoch: int, owner: str, lease_until: float, claim_id: str
    ) -> int:
        raise NotImplementedError

    async def _claimed_as(self, session_id: str, epoch: int, claim_id: str) -> bool:
        """True if the session is at ``epoch``, taken by the claim ``claim_id``."""
        raise NotImplementedError

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
        cid = new_claim_id(claim_id)

        def plain() -> Awaitable[int]:
            return self._claim(session_id, expected_epoch, owner, lease_until, cid)

        if package is None and then is None:
            return await plain()
        store = cast("Store", self)
        try:
            return await claim_in_steps(store, plain, package, then)
        except (HandoffStateError, ConflictError):
            # the package is moved or the batch is stored: by this very claim, before?
            if not await self._claimed_as(session_id, expected_epoch + 1, cid):
                raise
        if then is not None:
            stored = await store.read_events(session_id, then.first_seq - 1)
            if stored[: len(then.events)] != then.events:
                [error] = await store.append([then])
                if error is not None:
                    raise error
        return expected_epoch + 1


def new_claim_id(claim_id: str | None) -> str:
    """The id a claim is stored under: the caller's, or a fresh one for this call.

    Raises:
        ConfigError: ``claim_id`` is empty or not a string.
    """
    if claim_id is None:
        return uuid.uuid4().hex
    if not isinstance(claim_id, str) or not claim_id:
        msg = f"claim_id must be a non-empty string, got {claim_id!r:.80}"
        raise ConfigError(msg)
    return claim_id


def refuse_packages(url: str, batches: Sequence[Batch]) -> None:
    """Refuse batches carrying a package, for a store without ``atomic_packages``.

    Raises:
        ConfigError: a batch carries a package.
    """
    for b in batches:
        if b.package is not None:
            msg = (
                f"store {url!r} keeps handoff packages apart from the journal "
                f"(atomic_packages is false): store package {b.package.package_id!r} "
                "with package_put"
            )
            raise ConfigError(msg)


def storable_text(value: object) -> bool:
    """True when ``value`` is a str every store can hold as a key: no NUL (PostgreSQL
    text has none) and no lone surrogate (not UTF-8). No stored id is anything else."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_found(session_id: str) -> SessionNotFound:
    """The error for a session id the store does not hold."""
    msg = f"session {session_id!r} not found in the store"
    return SessionNotFound(msg, session_id=session_id)


def check_batch(
    session_id: str, stored_epoch: int | None, stored_seq: int, batch: Batch
) -> CallstateError | None:
    """Why a batch may not be appended to a session in this state, or None if it may."""
    from ..errors import StaleEpochError

    if stored_epoch is None:
        return not_found(session_id)
    if batch.epoch != stored_epoch:
        msg = (
            f"session {session_id!r} is owned at epoch {stored_epoch}; "
            f"this writer holds epoch {batch.epoch} and is fenced"
        )
        return StaleEpochError(
            msg, session_id=session_id, epoch=batch.epoch, current_epoch=stored_epoch
        )
    if batch.first_seq != stored_seq + 1:
        msg = (
            f"session {session_id!r}: batch starts at seq {batch.first_seq} "
            f"but the journal ends at {stored_seq}"
        )
        return ConflictError(msg)
    return None


def stale_claim(session_id: str, expected: int, current: int) -> CallstateError:
    """The error for a claim that lost the race for a session."""
    from ..errors import StaleEpochError

    msg = (
        f"session {session_id!r} is at epoch {current}, not {expected}: another owner took it first"
    )
    return StaleEpochError(msg, session_id=session_id, epoch=expected, current_epoch=current)
