"""Session events: frozen, tagged msgspec structs and their one codec.

The structs live by family (``session_events``, ``speech_events``, ``tool_events``,
``link_events``, on ``event_base``); this module joins them in the ``Event`` union,
decodes them with one union decoder and checks what is recorded. Every name stays
importable from here.

Every change to a session is one of these, appended to the session's journal with a
gap-free ``seq``. Schema rules: new fields get defaults, a field's type never
changes, a removed tag stays decodable. Every encoded event carries ``v``, the
format version it was written with.
"""

from __future__ import annotations

from typing import Final

import msgspec

from ..errors import CodecError, VersionError
from .event_base import FORMAT_VERSION, SEALED_VERSION, Delivery, Effect, EventBase, OnInterrupt
from .link_events import (
    LinkLost,
    LinkRestored,
    OutboxDropped,
    OutboxQueued,
    OutboxSent,
    UserdataPatch,
)
from .session_events import (
    HandoffAccepted,
    HandoffOffered,
    HandoffReclaimed,
    SessionEnded,
    SessionExpiredEvent,
    SessionResumed,
    SessionStarted,
)
from .speech_events import (
    AgentFinished,
    AgentProgress,
    AgentStarted,
    Interrupted,
    UserPartial,
    UserTurn,
)
from .tool_events import (
    ToolCancelled,
    ToolContextDelivered,
    ToolDeduplicated,
    ToolDelivery,
    ToolFailed,
    ToolInDoubt,
    ToolProgress,
    ToolRequested,
    ToolStarted,
    ToolSucceeded,
)
from .versioned import decode_versioned, decode_with, newer_version

__all__ = [
    "EVENT_TYPES",
    "FORMAT_VERSION",
    "SEALED_VERSION",
    "AgentFinished",
    "AgentProgress",
    "AgentStarted",
    "Delivery",
    "Effect",
    "Event",
    "HandoffAccepted",
    "HandoffOffered",
    "HandoffReclaimed",
    "Interrupted",
    "LinkLost",
    "LinkRestored",
    "OutboxDropped",
    "OutboxQueued",
    "OnInterrupt",
    "OutboxSent",
    "SessionEnded",
    "SessionExpiredEvent",
    "SessionResumed",
    "SessionStarted",
    "ToolCancelled",
    "ToolContextDelivered",
    "ToolDeduplicated",
    "ToolDelivery",
    "ToolFailed",
    "ToolInDoubt",
    "ToolProgress",
    "ToolRequested",
    "ToolStarted",
    "ToolSucceeded",
    "UserPartial",
    "UserTurn",
    "UserdataPatch",
    "check_event",
    "check_recorded",
    "decode_event",
    "decode_versioned",
    "decode_with",
    "decode_events",
    "encode_event",
    "encode_events",
    "newer_version",
]

Event = (
    SessionStarted
    | SessionResumed
    | SessionEnded
    | SessionExpiredEvent
    | UserPartial
    | UserTurn
    | AgentStarted
    | AgentProgress
    | AgentFinished
    | Interrupted
    | ToolRequested
    | ToolStarted
    | ToolProgress
    | ToolSucceeded
    | ToolFailed
    | ToolCancelled
    | ToolInDoubt
    | ToolDelivery
    | ToolContextDelivered
    | UserdataPatch
    | LinkLost
    | LinkRestored
    | OutboxDropped
    | OutboxQueued
    | OutboxSent
    | HandoffOffered
    | HandoffAccepted
    | HandoffReclaimed
    | ToolDeduplicated
)

#: Every event's base (``handle.py`` bounds a type variable by it).
_Base = EventBase

EVENT_TYPES: Final[tuple[type[Event], ...]] = Event.__args__

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)
_list_decoder = msgspec.json.Decoder(list[Event])


def _field_value(event: Event, message: str) -> str:
    """`` (value: …)`` for a top-level field named in a msgspec error message, else ``""``."""
    marker = "at `$."
    if marker not in message:
        return ""
    name = message.rsplit(marker, 1)[1].split("`", 1)[0]
    if not name.isidentifier() or not hasattr(event, name):
        return ""
    return f" (value: {getattr(event, name)!r:.80})"


def encode_event(event: Event) -> bytes:
    """Encode one event to its stored JSON form.

    Raises:
        CodecError: a field holds a value JSON cannot carry; the message names it.
    """
    try:
        return _encoder.encode(event)
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as exc:
        # RecursionError: a value nested too deeply, or one that contains itself
        tag = type(event).__struct_config__.tag
        for name in event.__struct_fields__:
            try:
                _encoder.encode(getattr(event, name))
            except (TypeError, ValueError, RecursionError, msgspec.EncodeError):
                msg = f"event {tag!r}: field `$.{name}` cannot be encoded: {exc}"
                raise CodecError(msg) from exc
        msg = f"event {tag!r} cannot be encoded: {exc}"
        raise CodecError(msg) from exc


def check_event(event: Event) -> bytes:
    """Encode ``event`` and check it decodes back as written; returns the encoding.

    This is what keeps an ill-typed value (``user_said(123)``) out of the journal,
    where it would make the session impossible to restore.

    Raises:
        CodecError: a field has the wrong type or cannot be encoded; the message
            names the field and the value.
    """
    data = encode_event(event)
    try:
        decode_with(_decoder, data)
    except msgspec.DecodeError as exc:
        tag = type(event).__struct_config__.tag
        msg = f"event {tag!r} is ill-typed: {exc}{_field_value(event, str(exc))}"
        raise CodecError(msg) from exc
    return data


# speech events hold only strings besides seq/at/v: exact type checks prove they
# round-trip, so the hot path skips check_event's encode and decode for them
_TEXT_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    UserPartial: ("text",),
    UserTurn: ("text",),
    AgentStarted: ("utterance_id", "text"),
    AgentProgress: ("utterance_id", "spoken_text"),
    AgentFinished: ("utterance_id",),
}
_OPTIONAL_TEXT: Final[dict[type, str]] = {AgentProgress: "text", AgentFinished: "text"}


def _plain_text(value: object) -> bool:
    # JSON carries any str but one with lone surrogates; ASCII has none
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _speech_ok(event: Event) -> bool:
    names = _TEXT_FIELDS.get(type(event))
    if names is None or type(event.seq) is not int or type(event.at) is not float:
        return False
    if type(event.v) is not int or event.at - event.at != 0.0:  # JSON has no NaN or inf
        return False
    for name in names:
        value = getattr(event, name)
        if not (type(value) is str and value.isascii()) and not _plain_text(value):
            return False
    optional = _OPTIONAL_TEXT.get(type(event))
    if optional is not None:
        value = getattr(event, optional)
        return value is None or _plain_text(value)
    return True


def check_recorded(event: Event) -> None:
    """Refuse an ill-typed event as :func:`check_event` does, cheaply where possible.

    A speech event whose fields have their exact types is accepted without encoding
    it; every other event goes through :func:`check_event`.

    Raises:
        CodecError: a field has the wrong type or cannot be encoded; the message
            names the field and the value.
    """
    if not _speech_ok(event):
        check_event(event)


def _check_version(event: Event) -> Event:
    if event.v > SEALED_VERSION:
        msg = (
            f"event format version {event.v} at `$.v` is newer than this callstate "
            f"understands ({SEALED_VERSION}); upgrade callstate to read it"
        )
        raise VersionError(msg)
    return event


def _newer(data: bytes | str, exc: msgspec.DecodeError) -> VersionError | None:
    newer = newer_version(data, SEALED_VERSION)
    if newer is None:
        return None
    msg = (
        f"event format version {newer} at `$.v` is newer than this callstate "
        f"understands ({SEALED_VERSION}); upgrade callstate to read it ({exc})"
    )
    return VersionError(msg)


def decode_event(data: bytes | str) -> Event:
    """Decode one stored event.

    Raises:
        CodecError: the bytes are not a known event; the message names the field.
        VersionError: the event was written by a newer format version.
    """
    try:
        event: Event = decode_with(_decoder, data)
    except msgspec.DecodeError as exc:
        # a newer writer may add tags or fields this version cannot read: say so
        version_error = _newer(data, exc)
        if version_error is not None:
            raise version_error from exc
        msg = f"undecodable event: {exc}"
        raise CodecError(msg) from exc
    return _check_version(event)


def decode_events(data: bytes | str) -> list[Event]:
    """Decode a JSON array of events (as written by :func:`encode_events`).

    Raises:
        CodecError: an element is not a known event; the message names its index and field.
        VersionError: an event was written by a newer format version.
    """
    try:
        events: list[Event] = decode_with(_list_decoder, data)
    except msgspec.DecodeError as exc:
        version_error = _newer(data, exc)
        if version_error is not None:
            raise version_error from exc
        msg = f"undecodable event list: {exc}"
        raise CodecError(msg) from exc
    return [_check_version(e) for e in events]


def encode_events(events: list[Event]) -> bytes:
    """Encode events as one JSON array.

    Raises:
        CodecError: an event holds a value JSON cannot carry.
    """
    return b"[" + b",".join(encode_event(e) for e in events) + b"]"
