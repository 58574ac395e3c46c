"""Arrays for the group-commit statement, packed in PostgreSQL's binary array format.

A group commit of 1,000 sessions sends arrays of thousands of elements; packing them
here with ``struct`` and ``bytes.join`` is several times cheaper than adapting Python
lists element by element. ``register`` teaches a connection to pass them through.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from typing import Any, cast

from psycopg.adapt import AdaptersMap, Dumper
from psycopg.pq import Format

__all__ = ["bytea_array", "float8_array", "int8_array", "register", "text_array"]

# element and array type oids (pg_type)
_TEXT, _TEXT_ARRAY = 25, 1009
_INT8, _INT8_ARRAY = 20, 1016
_FLOAT8, _FLOAT8_ARRAY = 701, 1022
_BYTEA, _BYTEA_ARRAY = 17, 1001


class _Packed(bytes):
    """An array already in binary wire format."""


class _TextArray(_Packed):
    pass


class _Int8Array(_Packed):
    pass


class _Float8Array(_Packed):
    pass


class _ByteaArray(_Packed):
    pass


def _dumper(array_oid: int) -> type[Dumper]:
    class _PackedDumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: Any) -> bytes:
            return cast(bytes, obj)  # registered for _Packed (bytes) subclasses only

    return _PackedDumper


def register(adapters: AdaptersMap) -> None:
    """Let ``adapters`` send packed arrays as they are."""
    for cls, oid in (
        (_TextArray, _TEXT_ARRAY),
        (_Int8Array, _INT8_ARRAY),
        (_Float8Array, _FLOAT8_ARRAY),
        (_ByteaArray, _BYTEA_ARRAY),
    ):
        adapters.register_dumper(cls, _dumper(oid))


def _header(elem_oid: int, n: int) -> bytes:
    if n == 0:
        return struct.pack(">iiI", 0, 0, elem_oid)  # zero dimensions: '{}'
    return struct.pack(">iiIii", 1, 0, elem_oid, n, 1)


def _varlena(elem_oid: int, items: Sequence[bytes]) -> bytes:
    return _header(elem_oid, len(items)) + b"".join([len(x).to_bytes(4, "big") + x for x in items])


def text_array(values: Sequence[str]) -> _TextArray:
    """A ``text[]``."""
    return _TextArray(_varlena(_TEXT, [v.encode() for v in values]))


def bytea_array(values: Sequence[bytes]) -> _ByteaArray:
    """A ``bytea[]``."""
    return _ByteaArray(_varlena(_BYTEA, values))


def _fixed(elem_oid: int, code: str, values: Sequence[float]) -> bytes:
    """Fixed-size elements: each is its length (8) then its value."""
    pairs = itertools.chain.from_iterable((8, v) for v in values)
    return _header(elem_oid, len(values)) + struct.pack(">" + ("i" + code) * len(values), *pairs)


def int8_array(values: Sequence[int]) -> _Int8Array:
    """An ``int8[]``."""
    return _Int8Array(_fixed(_INT8, "q", values))


def float8_array(values: Sequence[float]) -> _Float8Array:
    """A ``float8[]``."""
    return _Float8Array(_fixed(_FLOAT8, "d", values))
