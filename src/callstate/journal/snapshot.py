"""Snapshots of ``SessionState``: a cache of the fold, so restores cost little.

Format 1 is JSON; format 2 (written since) carries the conversation items in
MessagePack, which decodes faster, around the rest of the state as format 1. Both
decode; events stay JSON.
"""

from __future__ import annotations

import msgspec

from ..errors import CodecError, VersionError
from . import events as ev
from .state import SNAPSHOT_VERSION, Item, SessionState

__all__ = ["SNAPSHOT_VERSION", "decode_state", "encode_snapshot", "encode_state"]

_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(SessionState)
_snapshot_encoder = msgspec.msgpack.Encoder()


class _SnapshotV2(msgspec.Struct, array_like=True):
    """Format 2: the conversation items in MessagePack, everything else as format 1.

    Items (only str/float/bool) are the bulk of a long call and decode faster from
    MessagePack; the rest holds arbitrary app payloads and stays JSON, so a restored
    value is the same as a fold of the (JSON) journal gives.
    """

    v: int
    items: list[Item]
    rest: bytes  # the JSON snapshot of the state without its items


_snapshot_decoder = msgspec.msgpack.Decoder(_SnapshotV2)


class _Versioned(msgspec.Struct, array_like=True):
    """Just the ``v`` of a MessagePack snapshot, to tell "newer format" from "garbage"."""

    v: int


_snapshot_probe = msgspec.msgpack.Decoder(_Versioned)


def encode_state(state: SessionState) -> bytes:
    """Encode ``state`` as JSON, format 1 (:func:`decode_state` reads it back)."""
    return _state_encoder.encode(state)


def encode_snapshot(state: SessionState) -> bytes:
    """Encode a snapshot of ``state`` in the current format (2)."""
    rest = _state_encoder.encode(msgspec.structs.replace(state, items=[]))
    return _snapshot_encoder.encode(_SnapshotV2(v=SNAPSHOT_VERSION, items=state.items, rest=rest))


def _is_msgpack(data: bytes | str) -> bool:
    # format 2 is a MessagePack array (fixarray 0x90-0x9f, array16/32 0xdc/0xdd);
    # format 1 is JSON text, starting with "{" or whitespace
    if isinstance(data, str) or not data:
        return False
    first = data[0]
    return 0x90 <= first <= 0x9F or first in (0xDC, 0xDD)


def _newer_snapshot(data: bytes | str, msgpack: bool) -> int | None:
    if not msgpack or isinstance(data, str):
        return ev.newer_version(data, SNAPSHOT_VERSION)
    try:
        v = ev.decode_with(_snapshot_probe, data).v
    except msgspec.DecodeError:
        return None
    return v if v > SNAPSHOT_VERSION else None


def _decode(data: bytes | str, msgpack: bool) -> SessionState:
    if not msgpack or isinstance(data, str):
        state: SessionState = ev.decode_with(_state_decoder, data)
        return state
    snapshot = ev.decode_with(_snapshot_decoder, data)
    if snapshot.v > SNAPSHOT_VERSION:
        msg = f"snapshot format version {snapshot.v} is newer than {SNAPSHOT_VERSION}"
        raise msgspec.DecodeError(msg)
    state = ev.decode_with(_state_decoder, snapshot.rest)
    state.items = snapshot.items
    return state


def decode_state(data: bytes | str) -> SessionState:
    """Decode a snapshot written by :func:`encode_snapshot` or :func:`encode_state`
    (any format up to ``SNAPSHOT_VERSION``: 1 is JSON, 2 MessagePack around JSON).

    Raises:
        CodecError: the bytes are not a snapshot; the message names the field.
        VersionError: the snapshot was written by a newer format version.
    """
    msgpack = _is_msgpack(data)
    try:
        state = _decode(data, msgpack)
    except msgspec.DecodeError as exc:
        newer = _newer_snapshot(data, msgpack)
        if newer is not None:  # a newer writer changed the layout: say so, not "garbage"
            msg = f"snapshot format version {newer} at `$.v` is newer than {SNAPSHOT_VERSION}"
            msg = f"{msg}: {exc}"
            raise VersionError(msg) from exc
        msg = f"undecodable snapshot: {exc}"
        raise CodecError(msg) from exc
    if state.v > SNAPSHOT_VERSION:
        msg = f"snapshot format version {state.v} at `$.v` is newer than {SNAPSHOT_VERSION}"
        raise VersionError(msg)
    state.v = SNAPSHOT_VERSION  # read: in memory it is a current state, whatever wrote it
    return state
