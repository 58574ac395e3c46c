"""Snapshots of ``SessionState``: a cache of the fold, so restores cost little.

Format 1 is JSON; format 2 carries the conversation items in MessagePack, which
decodes faster, around the rest of the state as format 1. Format 3 (written since) is
format 2 plus ``sealed``: with a sealer, the caller id and the personal userdata leave
the JSON part and travel encrypted for ``"snapshot:<session id>"``. Format 4 (written
since) is format 3 whose older conversation and tool calls travel in numbered *parts*
beside it: every full run of ``ITEMS_PER_PART`` items (MessagePack) and of
``CALLS_PER_PART`` calls (JSON) is one part, stored once and rewritten only when the
fold replaced one of its entries, so a snapshot's writes stay flat however long the call
grows. The snapshot itself (the *head*) holds the rest and how many parts it continues.
Item part ``k`` is stored under number ``2k``, call part ``k`` under ``2k + 1``. Every
format decodes; events stay JSON.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

import msgspec

from ..errors import CodecError, VersionError
from ..sealing import Sealer, open_personal, seal_personal, split_personal
from . import events as ev
from .state import SNAPSHOT_VERSION, Item, SessionState, ToolCall

__all__ = [
    "CALLS_PER_PART",
    "ITEMS_PER_PART",
    "SNAPSHOT_VERSION",
    "StoredParts",
    "decode_state",
    "encode_parted",
    "encode_snapshot",
    "encode_state",
    "snapshot_context",
]

#: Conversation items in one snapshot part (format 4).
ITEMS_PER_PART: Final = 32
#: Tool calls in one snapshot part (format 4).
CALLS_PER_PART: Final = 8

_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(SessionState)
_snapshot_encoder = msgspec.msgpack.Encoder()
#: a shallow copy of a call (replace with no changes), half the cost of ``copy.copy``
_copy: Final = msgspec.structs.replace


class _SnapshotV2(msgspec.Struct, array_like=True):
    """Formats 2 to 4: the conversation items in MessagePack, everything else as format 1.

    Items (only str/float/bool) are the bulk of a long call and decode faster from
    MessagePack; the rest holds arbitrary app payloads and stays JSON, so a restored
    value is the same as a fold of the (JSON) journal gives.
    """

    v: int
    items: list[Item]  # format 4: the items after those in parts
    rest: bytes  # the JSON snapshot of the state without its items (4: and parted calls)
    sealed: str | None = None  # format 3: caller and personal userdata, encrypted
    item_parts: int = 0  # format 4: the first item_parts * ITEMS_PER_PART items are in parts
    call_parts: int = 0  # format 4: the first call_parts * CALLS_PER_PART calls are in parts


_snapshot_decoder = msgspec.msgpack.Decoder(_SnapshotV2)
_items_decoder = msgspec.msgpack.Decoder(list[Item])
_calls_decoder = msgspec.json.Decoder(dict[str, ToolCall])


class StoredParts:
    """The parts of a session's snapshot already in the store, as written.

    Kept by the writer between snapshots: a part whose entries are still equal to the
    state's is not written again. ``epoch`` is the owner's epoch that wrote them (a
    newer owner may have written others since).
    """

    __slots__ = ("calls", "epoch", "items")

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch
        #: item part k as written: the very ``Item`` objects (the fold replaces, never edits)
        self.items: list[list[Item]] = []
        #: call part k as written: ``(key, copy of the call)`` (the fold edits calls in place)
        self.calls: list[list[tuple[str, ToolCall]]] = []


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
    """Encode a snapshot of ``state`` in the current format (4) without parts (the head
    holds everything), its caller data sealed when a ``sealer`` is given."""
    return _encode_head(state, sealer, state.items, state.calls, 0, 0)


def encode_parted(
    state: SessionState, sealer: Sealer | None, stored: StoredParts
) -> tuple[bytes, dict[int, bytes], StoredParts]:
    """Encode a snapshot of ``state`` in format 4: its head, the parts to store with it
    (those ``stored`` does not already hold as they are now) and what will then be
    stored. Pass ``StoredParts()`` when nothing is known to be stored.

    Returns:
        ``(head, parts, stored_after)``; ``parts`` maps a part's number to its bytes.
    """
    if stored.epoch != state.epoch:
        stored = StoredParts(state.epoch)
    after = StoredParts(state.epoch)
    out: dict[int, bytes] = {}
    items = state.items
    n_items = len(items) // ITEMS_PER_PART
    for k in range(n_items):
        part = items[k * ITEMS_PER_PART : (k + 1) * ITEMS_PER_PART]
        if k < len(stored.items) and stored.items[k] == part:  # `is` first, then fields
            after.items.append(stored.items[k])
            continue
        out[2 * k] = _snapshot_encoder.encode(part)
        after.items.append(part)
    calls = list(state.calls.items())
    n_calls = len(calls) // CALLS_PER_PART
    for k in range(n_calls):
        entries = calls[k * CALLS_PER_PART : (k + 1) * CALLS_PER_PART]
        if k < len(stored.calls) and stored.calls[k] == entries:
            after.calls.append(stored.calls[k])
            continue
        out[2 * k + 1] = _state_encoder.encode(dict(entries))
        after.calls.append([(key, _copy(call)) for key, call in entries])
    head = _encode_head(
        state,
        sealer,
        items[n_items * ITEMS_PER_PART :],
        dict(calls[n_calls * CALLS_PER_PART :]),
        n_items,
        n_calls,
    )
    return head, out, after


def _encode_head(
    state: SessionState,
    sealer: Sealer | None,
    items: list[Item],
    calls: dict[str, ToolCall],
    item_parts: int,
    call_parts: int,
) -> bytes:
    sealed = None
    bare = msgspec.structs.replace(state, items=[], calls=calls)
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
    head = _SnapshotV2(
        v=SNAPSHOT_VERSION,
        items=items,
        rest=rest,
        sealed=sealed,
        item_parts=item_parts,
        call_parts=call_parts,
    )
    return _snapshot_encoder.encode(head)


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


def _part(parts: Mapping[int, bytes], number: int) -> bytes:
    data = parts.get(number)
    if data is None:
        msg = f"snapshot part {number} is missing"
        raise msgspec.DecodeError(msg)
    return data


def _joined(
    snapshot: _SnapshotV2,
    state: SessionState,
    parts: Mapping[int, bytes],
    stored: StoredParts | None,
) -> None:
    """Put the entries of a format-4 snapshot's parts before those of its head (and
    into ``stored``, as read, when given)."""
    items: list[Item] = []
    for k in range(snapshot.item_parts):
        part = ev.decode_with(_items_decoder, _part(parts, 2 * k))
        if len(part) != ITEMS_PER_PART:
            msg = f"snapshot part {2 * k} holds {len(part)} items, not {ITEMS_PER_PART}"
            raise msgspec.DecodeError(msg)
        items += part
        if stored is not None:
            stored.items.append(part)
    items += snapshot.items
    state.items = items
    if snapshot.call_parts:
        calls: dict[str, ToolCall] = {}
        for k in range(snapshot.call_parts):
            part_calls = ev.decode_with(_calls_decoder, _part(parts, 2 * k + 1))
            if len(part_calls) != CALLS_PER_PART:
                n = len(part_calls)
                msg = f"snapshot part {2 * k + 1} holds {n} calls, not {CALLS_PER_PART}"
                raise msgspec.DecodeError(msg)
            calls.update(part_calls)
            if stored is not None:
                stored.calls.append([(key, _copy(call)) for key, call in part_calls.items()])
        calls.update(state.calls)
        state.calls = calls


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic collector off for a while (back on after, if it was on).

    Decoding a long call's snapshot allocates thousands of containers at once (each call
    holds dicts), each 700 of which set off a collection, and those escalate to the older
    generations: about a third of a 10,000-event call's snapshot decode in a resume.
    Decoded data holds no cycles, so nothing is left for the collector to free meanwhile;
    the one collection the allocations are due runs once it is back on.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _decode(
    data: bytes | str, msgpack: bool, parts: Mapping[int, bytes], stored: StoredParts | None
) -> tuple[SessionState, str | None]:
    if not msgpack or isinstance(data, str):
        state: SessionState = ev.decode_with(_state_decoder, data)
        return state, None
    snapshot = ev.decode_with(_snapshot_decoder, data)
    if snapshot.v > SNAPSHOT_VERSION:
        msg = f"snapshot format version {snapshot.v} is newer than {SNAPSHOT_VERSION}"
        raise msgspec.DecodeError(msg)
    state = ev.decode_with(_state_decoder, snapshot.rest)
    if snapshot.item_parts or snapshot.call_parts:
        _joined(snapshot, state, parts, stored)
    else:
        state.items = snapshot.items
    return state, snapshot.sealed


def decode_state(
    data: bytes | str,
    sealer: Sealer | None = None,
    parts: Mapping[int, bytes] | None = None,
    stored: StoredParts | None = None,
) -> SessionState:
    """Decode a snapshot written by :func:`encode_snapshot`, :func:`encode_parted` or
    :func:`encode_state` (any format up to ``SNAPSHOT_VERSION``: 1 is JSON, 2
    MessagePack around JSON, 3 that plus sealed caller data, opened with ``sealer``, 4
    that continuing ``parts``, stored beside it).

    ``stored``, when given (empty), is filled with the parts as read: an owner that
    goes on from this state passes it to :func:`encode_parted` (at its epoch), so its
    next snapshot writes only the parts that changed since, not the whole call again.

    Raises:
        CodecError: the bytes are not a snapshot; the message names the field.
        VersionError: the snapshot was written by a newer format version.
        SealError: its sealed caller data does not open (or there is no ``sealer``).
    """
    msgpack = _is_msgpack(data)
    try:
        with _gc_paused():
            state, sealed = _decode(data, msgpack, parts or {}, stored)
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
