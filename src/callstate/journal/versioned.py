"""Decoding stored, versioned JSON records: the format probe and uniform decode errors."""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import CodecError, VersionError
from .event_base import FORMAT_VERSION

__all__ = ["decode_versioned", "decode_with", "newer_version"]


class _Versioned(msgspec.Struct):
    """Just the ``v`` of a record, to tell "newer format" from "garbage"."""

    v: int = FORMAT_VERSION


_probe = msgspec.json.Decoder(_Versioned | list[_Versioned])


def decode_with(decoder: Any, data: bytes | str) -> Any:
    """``decoder.decode(data)``, failing only with ``msgspec.DecodeError``.

    msgspec raises ``UnicodeEncodeError`` for a str holding a lone surrogate and
    ``RecursionError`` for input nested deeper than the interpreter's stack; both are
    input that does not decode, and say so the same way.
    """
    try:
        return decoder.decode(data)
    except UnicodeEncodeError as exc:
        msg = f"input is not UTF-8 text: a lone surrogate at position {exc.start}"
        raise msgspec.DecodeError(msg) from exc
    except RecursionError as exc:
        msg = "input is nested too deeply to decode"
        raise msgspec.DecodeError(msg) from exc


def newer_version(data: bytes | str, current: int) -> int | None:
    """The ``v`` of a record (or the highest in a list) if it is newer than ``current``."""
    try:
        probe = decode_with(_probe, data)
    except msgspec.DecodeError:
        return None
    versions = [p.v for p in probe] if isinstance(probe, list) else [probe.v]
    newest = max(versions, default=current)
    return newest if newest > current else None


def decode_versioned(decoder: Any, data: bytes | str, *, version: int, what: str) -> Any:
    """Decode one stored JSON record of format ``version`` (an archive record, a
    follow-up result), with errors that name ``what``.

    Raises:
        VersionError: the record was written by a newer format version.
        CodecError: the bytes are not such a record; the message names the field.
    """
    newer = newer_version(data, version)
    if newer is not None:
        msg = (
            f"{what} format version {newer} at `$.v` is newer than {version}; "
            "upgrade callstate to read it"
        )
        raise VersionError(msg)
    try:
        return decode_with(decoder, data)
    except msgspec.DecodeError as exc:
        msg = f"undecodable {what}: {exc}"
        raise CodecError(msg) from exc
