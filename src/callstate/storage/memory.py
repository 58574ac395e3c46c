"""An in-process store: the reference backend, first to pass the conformance suite."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..errors import CallstateError, ConflictError, StorageError
from .base import (
    ArchiveRow,
    Batch,
    FollowUp,
    FollowUpRun,
    Loaded,
    PackageMove,
    PackageRow,
    SessionRecord,
    check_batch,
    new_claim_id,
    not_found,
    package_not_in,
    stale_claim,
)
from .figures import UNKNOWN_HEALTH, Figures

__all__ = ["MemoryStore"]

_MIGRATIONS = 1


class MemoryStore:
    """Keeps everything in dicts; nothing survives the process. For tests and demos."""

    atomic_packages = True  # a Batch's package is stored with its events

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._open = False
        self._sessions: dict[str, SessionRecord] = {}
        self._claim_ids: dict[str, str] = {}  # session id -> the claim that took its epoch
        self._events: dict[str, list[bytes]] = {}  # index i holds seq i + 1
        self._snapshots: dict[str, bytes] = {}
        self._parts: dict[str, dict[int, bytes]] = {}  # session id -> snapshot parts by number
        self._callers: dict[str, dict[str, float]] = {}
        self._archive: dict[str, ArchiveRow] = {}
        self._followups: dict[str, FollowUp] = {}
        self._runs: dict[str, FollowUpRun] = {}
        self._started: dict[str, float] = {}  # the claim each follow-up's last start counted
        self._packages: dict[str, PackageRow] = {}
        self._migrations: list[int] = []

    def _check_open(self) -> None:
        if not self._open:
            msg = f"store {self.url!r} is not open; call `await store.open()` first"
            raise StorageError(msg)

    async def open(self) -> None:
        if not self._migrations:
            self._migrations = list(range(1, _MIGRATIONS + 1))
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def schema_version(self) -> int:
        self._check_open()
        return max(self._migrations, default=0)

    async def create(self, record: SessionRecord, first: Batch) -> None:
        self._check_open()
        if record.session_id in self._sessions:
            msg = f"session {record.session_id!r} already exists"
            raise ConflictError(msg)
        if first.first_seq != 1:
            msg = f"a new session's first batch starts at seq 1, not {first.first_seq}"
            raise ConflictError(msg)
        clash = self._package_clash(first)
        if clash is not None:
            raise clash
        self._sessions[record.session_id] = msgspec.structs.replace(
            record, seq=first.last_seq, epoch=first.epoch
        )
        self._events[record.session_id] = list(first.events)
        self._apply_meta(first)

    def _apply_meta(self, batch: Batch) -> None:
        rec = self._sessions[batch.session_id]
        rec.seq = batch.last_seq
        rec.agent = batch.agent or rec.agent
        rec.status = batch.status
        rec.last_interaction_at = max(rec.last_interaction_at, batch.last_interaction_at)
        if batch.snapshot is not None:
            self._snapshots[batch.session_id] = batch.snapshot
            rec.snapshot_seq = batch.snapshot_seq
        if batch.snapshot_parts:
            self._parts.setdefault(batch.session_id, {}).update(batch.snapshot_parts)
        if batch.package is not None:
            self._packages[batch.package.package_id] = msgspec.structs.replace(batch.package)

    def _package_clash(self, batch: Batch) -> ConflictError | None:
        if batch.package is None or batch.package.package_id not in self._packages:
            return None
        msg = f"handoff package {batch.package.package_id!r} already exists"
        return ConflictError(msg)

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        self._check_open()
        results: list[CallstateError | None] = []
        for batch in batches:
            rec = self._sessions.get(batch.session_id)
            error = check_batch(
                batch.session_id,
                None if rec is None else rec.epoch,
                0 if rec is None else rec.seq,
                batch,
            )
            if error is None:
                error = self._package_clash(batch)
            if error is None:
                self._events[batch.session_id].extend(batch.events)
                self._apply_meta(batch)
            results.append(error)
        return results

    def _record(self, session_id: str) -> SessionRecord:
        rec = self._sessions.get(session_id)
        if rec is None:
            raise not_found(session_id)
        return rec

    async def load(self, session_id: str) -> Loaded:
        self._check_open()
        rec = self._record(session_id)
        return Loaded(
            record=msgspec.structs.replace(rec),
            snapshot=self._snapshots.get(session_id),
            events=self._events[session_id][rec.snapshot_seq :],
            snapshot_parts=dict(self._parts.get(session_id, {})),
        )

    async def read_events(self, session_id: str, after_seq: int = 0) -> list[bytes]:
        self._check_open()
        self._record(session_id)
        return self._events[session_id][max(after_seq, 0) :]  # a negative index would wrap

    async def get(self, session_id: str) -> SessionRecord | None:
        self._check_open()
        rec = self._sessions.get(session_id)
        return None if rec is None else msgspec.structs.replace(rec)

    async def list_sessions(
        self,
        *,
        statuses: Sequence[str] | None = None,
        lease_before: float | None = None,
        interaction_before: float | None = None,
        limit: int = 1000,
    ) -> list[SessionRecord]:
        self._check_open()
        rows = [
            msgspec.structs.replace(r)
            for r in self._sessions.values()
            if (statuses is None or r.status in statuses)
            and (lease_before is None or r.lease_until < lease_before)
            and (interaction_before is None or r.last_interaction_at < interaction_before)
        ]
        rows.sort(key=lambda r: r.last_interaction_at, reverse=True)
        return rows[:limit]

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
        self._check_open()
        cid = new_claim_id(claim_id)
        done = self._sessions.get(session_id)
        if done and done.epoch == expected_epoch + 1 and self._claim_ids.get(session_id) == cid:
            return done.epoch  # this very claim, done before: its package and batch too
        pkg = None if package is None else self._packages.get(package.package_id)
        if package is not None and (pkg is None or pkg.status != package.from_status):
            raise package_not_in(package, None if pkg is None else pkg.status)
        rec = self._record(session_id)
        if rec.epoch != expected_epoch:
            raise stale_claim(session_id, expected_epoch, rec.epoch)
        if then is not None:
            error = check_batch(session_id, expected_epoch + 1, rec.seq, then)
            if error is not None:
                raise error
        if pkg is not None and package is not None:
            pkg.status = package.to_status
        rec.epoch += 1
        self._claim_ids[session_id] = cid
        rec.lease_owner = owner
        rec.lease_until = lease_until
        if then is not None:
            self._events[session_id].extend(then.events)
            self._apply_meta(then)
        return rec.epoch

    async def renew_leases(self, owner: str, session_ids: Sequence[str], until: float) -> list[str]:
        self._check_open()
        held = []
        for sid in session_ids:
            rec = self._sessions.get(sid)
            if rec is not None and rec.lease_owner == owner:
                rec.lease_until = until
                held.append(sid)
        return held

    async def release_lease(self, session_id: str, owner: str) -> None:
        self._check_open()
        rec = self._sessions.get(session_id)
        if rec is not None and rec.lease_owner == owner:
            rec.lease_owner = None
            rec.lease_until = 0.0

    async def purge(self, session_id: str) -> None:
        self._check_open()
        self._sessions.pop(session_id, None)
        self._claim_ids.pop(session_id, None)
        self._events.pop(session_id, None)
        self._snapshots.pop(session_id, None)
        self._parts.pop(session_id, None)
        for entries in self._callers.values():
            entries.pop(session_id, None)

    async def index_caller(self, caller_hash: str, session_id: str, at: float) -> None:
        self._check_open()
        self._callers.setdefault(caller_hash, {})[session_id] = at

    async def lookup_caller(self, caller_hash: str) -> list[tuple[str, float]]:
        self._check_open()
        entries = self._callers.get(caller_hash, {})
        return sorted(entries.items(), key=lambda kv: kv[1], reverse=True)

    async def archive_insert(self, row: ArchiveRow) -> None:
        self._check_open()
        if row.record_id in self._archive:
            msg = f"archive record {row.record_id!r} already exists; archive rows are never overwritten"
            raise ConflictError(msg)
        self._archive[row.record_id] = msgspec.structs.replace(row)

    async def archive_get(self, record_id: str) -> ArchiveRow | None:
        self._check_open()
        row = self._archive.get(record_id)
        return None if row is None else msgspec.structs.replace(row)

    async def archive_list(
        self,
        *,
        session_id: str | None = None,
        caller_hash: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ArchiveRow]:
        self._check_open()
        rows = [
            msgspec.structs.replace(r)
            for r in self._archive.values()
            if (session_id is None or r.session_id == session_id)
            and (caller_hash is None or r.caller_hash == caller_hash)
            and (since is None or r.ended_at >= since)
        ]
        rows.sort(key=lambda r: r.ended_at, reverse=True)
        return rows[:limit]

    async def archive_figures(self, since: float, until: float) -> Figures:
        self._check_open()
        rows = [
            r
            for r in self._archive.values()
            if r.closed_at is not None and since <= r.closed_at < until
        ]
        legs: dict[str, int] = {}
        for r in rows:
            legs[r.health or UNKNOWN_HEALTH] = legs.get(r.health or UNKNOWN_HEALTH, 0) + 1
        return Figures(
            legs=legs,
            with_tools=sum(1 for r in rows if r.tools),
            with_in_doubt=sum(1 for r in rows if r.in_doubt),
            recover_s=[r.recover_s for r in rows if r.recover_s is not None],
            followup_lag_s=[
                f.updated_at - f.due_at
                for f in self._followups.values()
                if f.status == "done" and f.mark == "succeeded" and since <= f.due_at < until
            ],
        )

    async def followup_put(self, followup: FollowUp) -> None:
        self._check_open()
        existing = self._followups.get(followup.followup_id)
        if existing is None or existing.status == "pending":
            self._followups[followup.followup_id] = msgspec.structs.replace(followup)

    async def followup_cancel(self, session_id: str) -> int:
        self._check_open()
        count = 0
        for f in self._followups.values():
            if f.session_id == session_id and f.status == "pending":
                f.status = "cancelled"
                count += 1
        return count

    async def followup_claim(
        self, now: float, owner: str, claim_for: float, limit: int = 10
    ) -> list[FollowUp]:
        self._check_open()
        claimed: list[FollowUp] = []
        for f in sorted(self._followups.values(), key=lambda f: f.due_at):
            if len(claimed) >= limit:
                break
            due = f.status == "pending" and f.due_at <= now
            lapsed = f.status == "claimed" and f.claimed_until <= now
            if due or lapsed:
                f.status = "claimed"
                f.claimed_by = owner
                f.claimed_until = now + claim_for
                claimed.append(msgspec.structs.replace(f))
        return claimed

    async def followup_done(self, followup_id: str, owner: str) -> bool:
        self._check_open()
        f = self._followups.get(followup_id)
        if f is None or f.status != "claimed" or f.claimed_by != owner:
            return False
        f.status = "done"
        return True

    async def followup_start(self, followup_id: str, owner: str, now: float) -> int:
        self._check_open()
        f = self._followups.get(followup_id)
        if f is None or f.status != "claimed" or f.claimed_by != owner:
            return 0
        if self._started.get(followup_id) != f.claimed_until:
            self._started[followup_id] = f.claimed_until
            f.attempts += 1
        f.updated_at = now
        return f.attempts

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
        self._check_open()
        f = self._followups.get(followup_id)
        if f is None or f.status != "claimed" or f.claimed_by != owner:
            return False
        f.status = "done" if retry_at is None else "pending"
        f.due_at = f.due_at if retry_at is None else retry_at
        f.mark, f.last_error, f.updated_at = mark, error, now
        return True

    async def followup_get(self, followup_id: str) -> FollowUp | None:
        self._check_open()
        f = self._followups.get(followup_id)
        return None if f is None else msgspec.structs.replace(f)

    async def followup_list(self, limit: int = 100) -> list[FollowUp]:
        self._check_open()
        rows = sorted(self._followups.values(), key=lambda f: f.due_at, reverse=True)
        return [msgspec.structs.replace(f) for f in rows[: max(limit, 0)]]

    async def followup_retry(self, followup_id: str, now: float) -> bool:
        self._check_open()
        f = self._followups.get(followup_id)
        if f is None or f.state not in ("dead", "orphaned", "retrying"):
            return False
        f.status, f.mark, f.due_at, f.updated_at = "pending", "", now, now
        return True

    async def followup_record(self, run: FollowUpRun) -> None:
        self._check_open()
        self._runs.setdefault(run.followup_id, msgspec.structs.replace(run))

    async def followup_runs(self, session_id: str) -> list[FollowUpRun]:
        self._check_open()
        return [
            msgspec.structs.replace(r) for r in self._runs.values() if r.session_id == session_id
        ]

    async def package_put(self, row: PackageRow) -> None:
        self._check_open()
        if row.package_id in self._packages:
            msg = f"handoff package {row.package_id!r} already exists"
            raise ConflictError(msg)
        self._packages[row.package_id] = msgspec.structs.replace(row)

    async def package_get(self, package_id: str) -> PackageRow | None:
        self._check_open()
        row = self._packages.get(package_id)
        return None if row is None else msgspec.structs.replace(row)

    async def package_transition(self, package_id: str, from_status: str, to_status: str) -> bool:
        self._check_open()
        row = self._packages.get(package_id)
        if row is None or row.status != from_status:
            return False
        row.status = to_status
        return True
