"""Snapshots of ``SessionState``: a cache of the fold, so restores cost little.

Format 1 is JSON; format 2 carries the conversation items in MessagePack, which
decodes faster, around the rest of the state as format 1. Format 3 (written since) is
format 2 plus ``sealed``: with a sealer, the caller id and the personal userdata leave
the JSON part and travel encrypted for ``"snapshot:<session id>"``. All three decode;
events stay JSON.
"""

from __future__ import annotations

import msgspec

from ..errors import CodecError, VersionError
from ..sealing import Sealer, open_personal, seal_personal, split_personal
from . import events as ev
from .state import SNAPSHOT_VERSION, Item, SessionState

__all__ = [
    "SNAPSHOT_VERSION",
    "decode_state",
    "encode_snapshot",
    "encode_state",
    "snapshot_context",
]

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
    sealed: str | None = None  # format 3: caller and personal userdata, encrypted


_snapshot_decoder = msgspec.msgpack.Decoder(_SnapshotV2)


class _Versioned(msgspec.Struct, array_like=True):
    """Just the ``v`` of a MessagePack snapshot, to tell "newer format" from "garbage"."""

    v: int


_snapshot_probe = msgspec.msgpack.Decoder(_Versioned)


def encode_state(state: SessionState) -> bytes:
    """Encode ``state`` as JSON, format 1 (:func:`decode_state` reads it back)."""
    return _state_encoder.encode(state)


def snapshot_context(session_id: str) -> str:
    """The context a session's snapshot is sealed for."""
    return f"snapshot:{session_id}"


def encode_snapshot(state: SessionState, sealer: Sealer | None = None) -> bytes:
    """Encode a snapshot of ``state`` in the current format (3), its caller data
    sealed when a ``sealer`` is given."""
    sealed = None
    bare = msgspec.structs.replace(state, items=[])
    if sealer is not None:
        plain, secret = split_personal(state.userdata, state.personal)
        sealed = seal_personal(
            sealer,
            caller=state.caller,
            userdata=secret,
            context=snapshot_context(state.session_id),
        )
        if sealed is not None:
            bare = msgspec.structs.replace(bare, caller=None, userdata=plain)
    rest = _state_encoder.encode(bare)
    return _snapshot_encoder.encode(
        _SnapshotV2(v=SNAPSHOT_VERSION, items=state.items, rest=rest, sealed=sealed)
    )


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


def _decode(data: bytes | str, msgpack: bool) -> tuple[SessionState, str | None]:
    if not msgpack or isinstance(data, str):
        state: SessionState = ev.decode_with(_state_decoder, data)
        return state, None
    snapshot = ev.decode_with(_snapshot_decoder, data)
    if snapshot.v > SNAPSHOT_VERSION:
        msg = f"snapshot format version {snapshot.v} is newer than {SNAPSHOT_VERSION}"
        raise msgspec.DecodeError(msg)
    state = ev.decode_with(_state_decoder, snapshot.rest)
    state.items = snapshot.items
    return state, snapshot.sealed


def decode_state(data: bytes | str, sealer: Sealer | None = None) -> SessionState:
    """Decode a snapshot written by :func:`encode_snapshot` or :func:`encode_state`
    (any format up to ``SNAPSHOT_VERSION``: 1 is JSON, 2 MessagePack around JSON, 3
    that plus sealed caller data, opened with ``sealer``).

    Raises:
        CodecError: the bytes are not a snapshot; the message names the field.
        VersionError: the snapshot was written by a newer format version.
        SealError: its sealed caller data does not open (or there is no ``sealer``).
    """
    msgpack = _is_msgpack(data)
    try:
        state, sealed = _decode(data, msgpack)
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
    if sealed is not None:
        found = open_personal(sealer, sealed, context=snapshot_context(state.session_id))
        state.caller = found.caller
        state.userdata = {**state.userdata, **found.userdata}
    return state
