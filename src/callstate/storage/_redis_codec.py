"""How the Redis store writes values into keys and reads them back.

Times travel as ``repr(float)`` strings (exact both ways, and Lua compares them
exactly); a batch travels to its script as one msgpack array whose byte strings use
msgpack's *str* type, because the cmsgpack of Redis' Lua predates the bin types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import msgspec

from ..errors import CodecError
from .base import ArchiveRow, Batch, FollowUp, PackageRow, SessionRecord

__all__ = [
    "archive_fields",
    "archive_row",
    "fmt",
    "followup_row",
    "pack_batch",
    "pack_batches",
    "package_row",
    "pairs",
    "session_fields",
    "session_record",
    "tag",
]

_msgpack = msgspec.msgpack.Encoder().encode
_V = TypeVar("_V", int, float, str)


def tag(value: str) -> str:
    """``value`` as a hash tag body: injective, never empty, never holding a brace."""
    return "%" + value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def fmt(value: float) -> str:
    """A time as stored: the shortest string that reads back as the same float."""
    return repr(float(value))


def _str(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """``[k1, v1, k2, v2, …]`` (a hash as a script returns it) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def session_fields(record: SessionRecord, first: Batch) -> list[str | bytes]:
    """The meta hash of a new session, as ``[field, value, …]``."""
    fields: dict[str, str | bytes] = {
        "epoch": str(first.epoch),
        "seq": str(first.last_seq),
        "agent": first.agent or record.agent,
        "status": first.status,
        "created_at": fmt(record.created_at),
        "last_interaction_at": fmt(max(record.last_interaction_at, first.last_interaction_at)),
        "lease_until": fmt(record.lease_until),
        "snapshot_seq": str(first.snapshot_seq if first.snapshot is not None else 0),
    }
    if record.caller_hash is not None:
        fields["caller_hash"] = record.caller_hash
    if record.lease_owner is not None:
        fields["lease_owner"] = record.lease_owner
    return [x for kv in fields.items() for x in kv]


def _read(
    where: str, row: dict[bytes, bytes], field: str, kind: type[_V], default: _V | None = None
) -> _V:
    """One stored field as ``kind``; a missing or malformed one is a ``CodecError``."""
    raw = row.get(field.encode())
    try:
        if raw is None:
            if default is None:
                raise KeyError(field)
            return default
        return kind(raw.decode())
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        msg = f"{where}: stored field `{field}` = {raw!r} is not a valid {kind.__name__}"
        raise CodecError(msg) from exc


def session_record(sid: str, meta: dict[bytes, bytes]) -> SessionRecord:
    """A session's meta hash as a ``SessionRecord``.

    Raises:
        CodecError: a field is missing or malformed (the message names it).
    """
    where = f"redis session {sid!r}"
    return SessionRecord(
        session_id=sid,
        epoch=_read(where, meta, "epoch", int),
        seq=_read(where, meta, "seq", int),
        agent=_read(where, meta, "agent", str, ""),
        status=_read(where, meta, "status", str, "active"),
        caller_hash=_str(meta.get(b"caller_hash")),
        created_at=_read(where, meta, "created_at", float, 0.0),
        last_interaction_at=_read(where, meta, "last_interaction_at", float, 0.0),
        lease_owner=_str(meta.get(b"lease_owner")),
        lease_until=_read(where, meta, "lease_until", float, 0.0),
        snapshot_seq=_read(where, meta, "snapshot_seq", int, 0),
    )


def archive_fields(row: ArchiveRow) -> list[str | bytes]:
    """An archive record's hash, as ``[field, value, …]``."""
    fields: list[str | bytes] = ["record_id", row.record_id, "session_id", row.session_id]
    fields += ["ended_at", fmt(row.ended_at), "outcome", row.outcome, "data", row.data]
    if row.caller_hash is not None:
        fields += ["caller_hash", row.caller_hash]
    if row.closed_at is not None:
        fields += ["closed_at", fmt(row.closed_at), "tools", str(row.tools)]
        fields += ["in_doubt", str(row.in_doubt)]
    if row.health is not None:
        fields += ["health", row.health]
    if row.recover_s is not None:
        fields += ["recover_s", fmt(row.recover_s)]
    return fields


def archive_row(row: dict[bytes, bytes]) -> ArchiveRow:
    """An archive record's hash as an ``ArchiveRow``.

    Raises:
        CodecError: a field is missing or malformed (the message names it).
    """
    where = f"redis archive record {row.get(b'record_id')!r}"
    return ArchiveRow(
        record_id=_read(where, row, "record_id", str),
        session_id=_read(where, row, "session_id", str),
        caller_hash=_str(row.get(b"caller_hash")),
        ended_at=_read(where, row, "ended_at", float),
        outcome=_read(where, row, "outcome", str),
        data=row.get(b"data", b""),
        closed_at=_read(where, row, "closed_at", float) if b"closed_at" in row else None,
        health=_str(row.get(b"health")),
        tools=_read(where, row, "tools", int, 0),
        in_doubt=_read(where, row, "in_doubt", int, 0),
        recover_s=_read(where, row, "recover_s", float) if b"recover_s" in row else None,
    )


def package_row(row: dict[bytes, bytes]) -> PackageRow:
    """A package's hash as a ``PackageRow``.

    Raises:
        CodecError: a field is missing or malformed (the message names it).
    """
    where = f"redis package {row.get(b'package_id')!r}"
    return PackageRow(
        package_id=_read(where, row, "package_id", str),
        session_id=_read(where, row, "session_id", str),
        data=row.get(b"data", b""),
        status=_read(where, row, "status", str),
        created_at=_read(where, row, "created_at", float, 0.0),
    )


def _mp_bytes(data: bytes) -> bytes:
    """``data`` as a msgpack str."""
    n = len(data)
    if n < 32:
        return bytes((0xA0 | n,)) + data
    if n < 0x100:
        return b"\xd9" + bytes((n,)) + data
    if n < 0x10000:
        return b"\xda" + n.to_bytes(2, "big") + data
    return b"\xdb" + n.to_bytes(4, "big") + data


def _mp_array(n: int) -> bytes:
    """A msgpack array header for ``n`` items."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def pack_batch(b: Batch, doubt: tuple[int, int]) -> bytes:
    """The array the append script reads: see ``_redis_scripts.APPEND``."""
    head = [b.epoch, b.first_seq, b.last_seq, b.agent, b.status, fmt(b.last_interaction_at)]
    head += [b.snapshot_seq, 0 if b.snapshot is None else 1]
    parts = [x for n, data in b.snapshot_parts.items() for x in (_msgpack(n), _mp_bytes(data))]
    return b"".join(
        (
            b"\x9d",  # an array of 13
            *map(_msgpack, head),
            _mp_bytes(b.snapshot or b""),
            _msgpack(doubt[0]),
            _msgpack(doubt[1]),
            _mp_array(len(b.events)),
            *map(_mp_bytes, b.events),
            _mp_array(len(parts)),
            *parts,
        )
    )


def pack_batches(packed: Sequence[bytes]) -> bytes:
    """Packed batches as one msgpack array (for ``APPEND_MANY``)."""
    return b"".join((_mp_array(len(packed)), *packed))


def followup_row(h: dict[bytes, bytes]) -> FollowUp | None:
    """A follow-up from its stored hash (None for a missing one)."""
    if not h:
        return None
    return FollowUp(
        followup_id=h[b"followup_id"].decode(),
        session_id=h[b"session_id"].decode(),
        due_at=float(h[b"due_at"]),
        payload=bytes(h[b"payload"]),
        status=h[b"status"].decode(),
        claimed_by=_str(h.get(b"claimed_by")),
        claimed_until=float(h.get(b"claimed_until", b"0")),
        mark=h.get(b"mark", b"").decode(),
        attempts=int(h.get(b"attempts", b"0")),
        last_error=_str(h.get(b"last_error")),
        updated_at=float(h.get(b"updated_at", b"0")),
    )
