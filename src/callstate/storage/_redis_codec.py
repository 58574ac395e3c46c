"""How the Redis store writes values into keys and reads them back.

Times travel as ``repr(float)`` strings (exact both ways, and Lua compares them
exactly); a batch travels to its script as one msgpack array whose byte strings use
msgpack's *str* type, because the cmsgpack of Redis' Lua predates the bin types.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from .base import ArchiveRow, Batch, PackageRow, SessionRecord

__all__ = [
    "archive_fields",
    "archive_row",
    "fmt",
    "pack_batch",
    "pack_batches",
    "package_row",
    "pairs",
    "session_fields",
    "session_record",
    "tag",
]

_msgpack = msgspec.msgpack.Encoder().encode


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


def session_record(sid: str, meta: dict[bytes, bytes]) -> SessionRecord:
    """A session's meta hash as a ``SessionRecord``."""
    return SessionRecord(
        session_id=sid,
        epoch=int(meta[b"epoch"]),
        seq=int(meta[b"seq"]),
        agent=meta.get(b"agent", b"").decode(),
        status=meta.get(b"status", b"active").decode(),
        caller_hash=_str(meta.get(b"caller_hash")),
        created_at=float(meta.get(b"created_at", b"0")),
        last_interaction_at=float(meta.get(b"last_interaction_at", b"0")),
        lease_owner=_str(meta.get(b"lease_owner")),
        lease_until=float(meta.get(b"lease_until", b"0")),
        snapshot_seq=int(meta.get(b"snapshot_seq", b"0")),
    )


def archive_fields(row: ArchiveRow) -> list[str | bytes]:
    """An archive record's hash, as ``[field, value, …]``."""
    fields: list[str | bytes] = ["record_id", row.record_id, "session_id", row.session_id]
    fields += ["ended_at", fmt(row.ended_at), "outcome", row.outcome, "data", row.data]
    if row.caller_hash is not None:
        fields += ["caller_hash", row.caller_hash]
    return fields


def archive_row(row: dict[bytes, bytes]) -> ArchiveRow:
    """An archive record's hash as an ``ArchiveRow``."""
    return ArchiveRow(
        record_id=row[b"record_id"].decode(),
        session_id=row[b"session_id"].decode(),
        caller_hash=_str(row.get(b"caller_hash")),
        ended_at=float(row[b"ended_at"]),
        outcome=row[b"outcome"].decode(),
        data=row[b"data"],
    )


def package_row(row: dict[bytes, bytes]) -> PackageRow:
    """A package's hash as a ``PackageRow``."""
    return PackageRow(
        package_id=row[b"package_id"].decode(),
        session_id=row[b"session_id"].decode(),
        data=row[b"data"],
        status=row[b"status"].decode(),
        created_at=float(row[b"created_at"]),
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
    return b"".join(
        (
            b"\x9c",  # an array of 12
            *map(_msgpack, head),
            _mp_bytes(b.snapshot or b""),
            _msgpack(doubt[0]),
            _msgpack(doubt[1]),
            _mp_array(len(b.events)),
            *map(_mp_bytes, b.events),
        )
    )


def pack_batches(packed: Sequence[bytes]) -> bytes:
    """Packed batches as one msgpack array (for ``APPEND_MANY``)."""
    return b"".join((_mp_array(len(packed)), *packed))
