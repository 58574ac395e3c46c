"""The call archive: one insert-only ``ArchiveRecord`` per call, and post-call follow-ups.

A *call* is one continuous ownership run of a session: from its start (or a resume,
takeover or accepted handoff) to its end, expiry, or the next owner taking over. Its
record id is ``"{session_id}:{epoch}"`` (the run's epoch), so two calls never share an
id and a retried write can never land twice: the store refuses a second insert.

Outcomes: ``completed`` (ended normally), ``recovered`` (ended, in a run that began
with a resume), ``superseded`` (another owner took over or a handoff was accepted
before it ended), ``abandoned`` (expired without an end), ``failed`` (ended with
``failed=True``). Who writes the records: the owner ending the call, or whoever
expires it (``abandoned``). A takeover writes nothing, so resuming stays fast: the
records of runs it superseded are rebuilt from the journal (which is kept until the
session is purged) when the session next ends or expires, each closed at the time of
the takeover that ended it, so whichever keeper writes one writes the same record.

Post-call follow-ups, scheduled when a record is written, live in
:mod:`callstate.archive.followups`; a follow-up is given the whole call (every leg) as
a :class:`~callstate.archive.calls.CallRecord`.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from ..errors import ConfigError, ConflictError
from ..journal import events as ev
from ..journal.state import Item, SessionState, ToolCall, apply
from ..observe.recovery import RecoveryEvent, RecoveryKind
from ..sealing import Sealer, open_personal, seal_personal, split_personal
from ..storage.base import ArchiveRow, storable_text
from .health import Health, RunFacts, classify

if TYPE_CHECKING:
    from ..runtime.host import Host
    from ..storage.base import Store

__all__ = [
    "ARCHIVE_VERSION",
    "SEALED_ARCHIVE_VERSION",
    "Archive",
    "ArchiveRecord",
    "Outcome",
    "Timings",
    "build_record",
    "decode_record",
    "encode_record",
    "figure_columns",
    "open_record",
    "run_facts",
    "seal_record",
    "ended_outcome",
    "superseded_records",
    "was_taken_over",
    "write_records",
]

ARCHIVE_VERSION: Final = 1
#: The version of a record holding sealed caller data (``sealed``), which a reader
#: older than sealing must refuse rather than read without its caller.
SEALED_ARCHIVE_VERSION: Final = 2
Outcome = Literal["completed", "recovered", "superseded", "abandoned", "failed"]


class Timings(msgspec.Struct, frozen=True, kw_only=True):
    """When the call ran. ``gap_s`` is the drop the run began with (0 for a fresh
    start); ``link_down_s`` the total time the link was lost during the run."""

    session_started_at: float
    started_at: float
    ended_at: float
    closed_at: float
    duration_s: float
    gap_s: float = 0.0
    link_down_s: float = 0.0


class ArchiveRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One archived call: transcript, tool ledger, recovery events, timings, outcome.

    ``transcript`` holds the conversation items of this run only (a continuation's
    earlier part is in the previous call's record); ``tools`` the calls this run
    requested, resolved or still had open.
    """

    record_id: str
    session_id: str
    epoch: int
    outcome: Outcome
    agent: str
    timings: Timings
    caller: str | None = None
    via: str = "start"
    end_reason: str | None = None
    first_seq: int = 0
    last_seq: int = 0
    transcript: list[Item] = []
    tools: list[ToolCall] = []
    recovery: list[RecoveryEvent] = []
    userdata: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    personal: list[str] = []  # userdata keys that are personal (sealed at rest)
    sealed: str | None = None  # as stored: caller and personal userdata, encrypted
    #: derived from the journaled run (see :mod:`callstate.archive.health`); None on
    #: records written before health classes
    health: Health | None = None
    v: int = ARCHIVE_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ArchiveRecord)


def encode_record(record: ArchiveRecord) -> bytes:
    """Encode a record to its stored JSON form."""
    return _encoder.encode(record)


def decode_record(data: bytes | str) -> ArchiveRecord:
    """Decode a stored record.

    Raises:
        CodecError: the bytes are not an archive record; the message names the field.
        VersionError: the record was written by a newer format version.
    """
    record: ArchiveRecord = ev.decode_versioned(
        _decoder, data, version=SEALED_ARCHIVE_VERSION, what="archive record"
    )
    return record


def record_context(record: ArchiveRecord) -> str:
    """The context a record's caller data is sealed for (its record id)."""
    return f"archive:{record.record_id}"


def seal_record(record: ArchiveRecord, sealer: Sealer | None) -> ArchiveRecord:
    """``record`` as stored: caller and personal userdata sealed (as is without a sealer)."""
    if sealer is None or (record.caller is None and not record.personal):
        return record
    plain, secret = split_personal(record.userdata, record.personal)
    sealed = seal_personal(
        sealer, caller=record.caller, userdata=secret, context=record_context(record)
    )
    if sealed is None:
        return record
    return msgspec.structs.replace(
        record, caller=None, userdata=plain, sealed=sealed, v=SEALED_ARCHIVE_VERSION
    )


def open_record(record: ArchiveRecord, sealer: Sealer | None) -> ArchiveRecord:
    """A stored record with its sealed caller data opened (plaintext records unchanged).

    Raises:
        SealError: the sealed data does not open (tampered, another record's, under an
            unknown key, or no ``sealer``).
    """
    if record.sealed is None:
        return record
    found = open_personal(sealer, record.sealed, context=record_context(record))
    return msgspec.structs.replace(
        record,
        caller=found.caller,
        userdata={**record.userdata, **found.userdata},
        sealed=None,
        v=ARCHIVE_VERSION,
    )


# -- building a record (pure) --------------------------------------------------------


def ended_outcome(state: SessionState) -> Outcome:
    """The outcome of a run that ended with ``SessionEnded``."""
    if state.end_failed:
        return "failed"
    return "recovered" if state.run_via in ("resume", "takeover") else "completed"


def _recovery_event(session_id: str, e: ev.Event) -> RecoveryEvent | None:
    kind: RecoveryKind
    call_id: str | None = None
    latency: float | None = None
    data: dict[str, Any] = {"seq": e.seq}
    match e:
        case ev.Interrupted():
            kind = "interrupt.reconciled"
            data.update(heard=e.heard_text, unspoken=e.unspoken_text, overtaken=list(e.overtaken))
        case ev.ToolInDoubt():
            kind, call_id = "tool.in_doubt", e.call_id
            data["resolution"] = e.resolution
        case ev.ToolDelivery():
            kind, call_id = f"result.{e.decision}", e.call_id  # type: ignore[assignment]
            data["reason"] = e.reason
        case ev.ToolCancelled():
            kind, call_id = "tool.cancelled", e.call_id
            data["reason"] = e.reason
        case ev.ToolDeduplicated():
            kind, call_id = "tool.deduplicated", e.call_id
            data.update(duplicate_of=e.duplicate_of, status=e.status)
        case ev.LinkLost():
            kind = "link.lost"
            data["reason"] = e.reason
        case ev.LinkRestored():
            kind, latency = "link.restored", e.gap_s * 1000.0
            data.update(gap_s=e.gap_s, flushed=e.flushed, dropped=e.dropped)
        case ev.OutboxDropped():
            kind = "outbox.dropped"
            data["count"] = e.count
        case ev.SessionResumed():
            kind = "session.resumed"
            data.update(via=e.via, gap_s=e.gap_s, epoch=e.epoch)
            if e.cause:  # why the previous owner lost it (journaled since health classes)
                data["cause"] = e.cause
        case ev.SessionExpiredEvent():
            kind = "session.expired"
            if e.cause:
                data["cause"] = e.cause
        case ev.HandoffOffered():
            kind = "handoff.offered"
            data.update(package_id=e.package_id, to_agent=e.to_agent)
        case ev.HandoffAccepted():
            kind = "handoff.accepted"
            data.update(package_id=e.package_id, agent=e.agent, epoch=e.epoch)
        case ev.HandoffReclaimed():
            kind = "handoff.reclaimed"
            data.update(package_id=e.package_id, epoch=e.epoch)
        case _:
            return None
    return RecoveryEvent(
        kind=kind, session_id=session_id, at=e.at, call_id=call_id, latency_ms=latency, data=data
    )


def _touched_calls(run_log: list[ev.Event]) -> set[str]:
    ids: set[str] = set()
    for e in run_log:
        if isinstance(e, ev.Interrupted):
            ids.update(e.overtaken)
        elif isinstance(
            e, ev.ToolInDoubt | ev.ToolDelivery | ev.ToolCancelled | ev.ToolDeduplicated
        ):
            ids.add(e.call_id)
    return ids


def run_facts(
    state: SessionState, run_log: list[ev.Event], tools: list[ToolCall], *, outcome: str, lost: str
) -> RunFacts:
    """What :func:`~callstate.archive.health.classify` reads of a run."""
    began = run_log[0] if run_log and run_log[0].seq == state.run_seq else None
    return RunFacts(
        outcome=outcome,
        began_cause=began.cause if isinstance(began, ev.SessionResumed) else "",
        lost_cause=lost,
        end_reason=state.end_reason if state.status == "ended" else None,
        link_restores=sum(1 for e in run_log if isinstance(e, ev.LinkRestored)),
        failed_tools=sum(1 for c in tools if c.status == "failed"),
    )


def build_record(
    state: SessionState, *, outcome: Outcome, closed_at: float, lost: str = ""
) -> ArchiveRecord:
    """The archive record of ``state``'s current run, as ``outcome``. Pure: no I/O.

    Call it with the state as the run left it (before a takeover or expiry event);
    ``lost`` is that event's journaled cause (why the run closed without an end).
    """
    run_log = [e for e in state.recovery_log if e.seq >= state.run_seq]
    transcript = state.items[state.run_items :]
    call_ids = {i.id for i in transcript if i.kind == "call"} | _touched_calls(run_log)
    call_ids.update(c.call_id for c in state.in_flight)
    tools = [c for c in state.calls.values() if c.call_id in call_ids]
    ended_at = state.ended_at if state.status == "ended" and state.ended_at else None
    if ended_at is None:
        ended_at = max(state.last_interaction_at, state.run_started_at)
    gap = next((e.gap_s for e in run_log if isinstance(e, ev.SessionResumed)), 0.0)
    link_down = sum(e.gap_s for e in run_log if isinstance(e, ev.LinkRestored))
    recovery = [r for e in run_log if (r := _recovery_event(state.session_id, e)) is not None]
    return ArchiveRecord(
        record_id=f"{state.session_id}:{state.epoch}",
        session_id=state.session_id,
        epoch=state.epoch,
        outcome=outcome,
        agent=state.agent,
        caller=state.caller,
        via=state.run_via or "start",
        end_reason=state.end_reason if state.status == "ended" else None,
        first_seq=state.run_seq,
        last_seq=state.seq,
        timings=Timings(
            session_started_at=state.started_at,
            started_at=state.run_started_at,
            ended_at=ended_at,
            closed_at=closed_at,
            duration_s=max(0.0, ended_at - state.run_started_at),
            gap_s=gap,
            link_down_s=link_down,
        ),
        transcript=[msgspec.structs.replace(i) for i in transcript],
        tools=[msgspec.structs.replace(c) for c in tools],
        recovery=recovery,
        userdata=dict(state.userdata),
        metadata=dict(state.metadata),
        personal=list(state.personal),
        health=classify(run_facts(state, run_log, tools, outcome=outcome, lost=lost)),
    )


#: Events that begin a new run; the run before one of them, if it never ended, was
#: superseded by it.
_TAKEOVERS: Final = (ev.SessionResumed, ev.HandoffAccepted, ev.HandoffReclaimed)


def superseded_records(
    events: Iterable[ev.Event], *, before_seq: int, ended: bool = False
) -> list[ArchiveRecord]:
    """The ``superseded`` records of every run before ``before_seq`` that a takeover
    closed without an end (with ``ended``, also the records of runs that ended before a
    ring-back, closed at their end: the end's own write may have died with its
    process). Pure: a fold of the journal.

    Each is built from the state just before the takeover, closed at the takeover's
    time, so any keeper rebuilding it at any later moment gets the same record.
    """
    state = SessionState()
    out: list[ArchiveRecord] = []
    for e in events:
        if e.seq >= before_seq:
            break
        if isinstance(e, _TAKEOVERS) and state.seq and state.status in ("active", "offered"):
            lost = e.cause if isinstance(e, ev.SessionResumed) else "handoff"
            out.append(build_record(state, outcome="superseded", closed_at=e.at, lost=lost))
        elif isinstance(e, _TAKEOVERS) and ended and state.status == "ended":
            closed = state.ended_at or e.at
            out.append(build_record(state, outcome=ended_outcome(state), closed_at=closed))
        apply(state, e)
    return out


def was_taken_over(state: SessionState) -> bool:
    """Whether the session had runs before this one (only the first begins at start)."""
    return state.run_via not in ("", "start")


def figure_columns(record: ArchiveRecord) -> dict[str, Any]:
    """What the store counts of ``record`` for fleet figures (``ArchiveRow``'s columns)."""
    h = record.health
    recovered = h is not None and h.kind == "recovered"
    t = record.timings
    return {
        "closed_at": t.closed_at,
        "health": None if h is None else h.kind,
        "tools": len(record.tools),
        "in_doubt": sum(1 for c in record.tools if c.in_doubt),
        "recover_s": t.gap_s + t.link_down_s if recovered else None,
    }


# -- the archive, as a keeper sees it --------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Archive has a method named `list`, which shadows the builtin in its signatures
_Records = list[ArchiveRecord]
_Paths = list[Path]


class Archive:
    """``keeper.archive``: read and export archived calls (writes are internal)."""

    def __init__(self, host: Host) -> None:
        self._host = host

    @property
    def store(self) -> Store:
        """The store the archive lives in."""
        return self._host.store

    @property
    def sealer(self) -> Sealer | None:
        """What seals and opens caller data at rest (None without a secret)."""
        return self._host.sealer

    async def insert(self, record: ArchiveRecord) -> bool:
        """Insert ``record`` once; False when a record with its id already exists."""
        row = ArchiveRow(
            record_id=record.record_id,
            session_id=record.session_id,
            caller_hash=self._host.caller_hash(record.caller),
            ended_at=record.timings.ended_at,
            outcome=record.outcome,
            data=encode_record(seal_record(record, self._host.sealer)),
            **figure_columns(record),
        )
        try:
            await self._host.store.archive_insert(row)
        except ConflictError:  # already archived (a retry or a racing keeper): keep the first
            return False
        self._host.emit(
            "call.archived",
            record.session_id,
            record_id=record.record_id,
            epoch=record.epoch,
            outcome=record.outcome,
            health=None if record.health is None else record.health.kind,
        )
        return True

    def _open(self, data: bytes) -> ArchiveRecord:
        return open_record(decode_record(data), self._host.sealer)

    async def get(self, record_id: str) -> ArchiveRecord | None:
        """One record by id (``"{session_id}:{epoch}"``), or None."""
        if not storable_text(record_id):  # no store holds such an id
            return None
        row = await self._host.store.archive_get(record_id)
        return None if row is None else self._open(row.data)

    async def list(
        self,
        *,
        session_id: str | None = None,
        caller: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> _Records:
        """Records matching every given filter, newest first.

        ``caller`` is matched through its keyed hash under every configured secret.
        """
        if limit < 1:
            msg = f"limit must be >= 1, got {limit!r}"
            raise ConfigError(msg)
        if any(v is not None and not storable_text(v) for v in (session_id, caller)):
            return []  # no store holds such an id or caller
        hashes: list[str | None] = [None]
        if caller is not None:
            hashes = list(self._host.caller_hashes(caller))
        rows: dict[str, ArchiveRow] = {}
        for h in hashes:
            for row in await self._host.store.archive_list(
                session_id=session_id, caller_hash=h, since=since, limit=limit
            ):
                rows[row.record_id] = row
        ordered = sorted(rows.values(), key=lambda r: (r.ended_at, r.record_id), reverse=True)
        return [self._open(r.data) for r in ordered[:limit]]

    async def export(
        self,
        directory: str | os.PathLike[str],
        *,
        session_id: str | None = None,
        caller: str | None = None,
        since: float | None = None,
        limit: int = 10_000,
    ) -> _Paths:
        """Write one pretty JSON file per record into ``directory``; returns the paths."""
        records = await self.list(session_id=session_id, caller=caller, since=since, limit=limit)
        return await asyncio.to_thread(write_records, Path(directory), records)


def write_records(out: Path, records: _Records) -> _Paths:
    """Write one pretty JSON file per record into ``out`` (blocking; run it in a thread)."""
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for record in records:
        stem = _UNSAFE.sub("_", record.record_id.replace(":", ".")) or "record"
        path = out / f"{stem}.json"
        n = 2
        while path in paths:  # two ids that sanitise alike
            path = out / f"{stem}-{n}.json"
            n += 1
        path.write_bytes(msgspec.json.format(encode_record(record), indent=2) + b"\n")
        paths.append(path)
    return paths
