"""Session events: frozen, tagged msgspec structs and their one codec.

Every change to a session is one of these, appended to the session's journal with a
gap-free ``seq``. Schema rules: new fields get defaults, a field's type never
changes, a removed tag stays decodable. Every encoded event carries ``v``, the
format version it was written with.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from ..errors import CodecError, VersionError

__all__ = [
    "EVENT_TYPES",
    "FORMAT_VERSION",
    "SEALED_VERSION",
    "AgentFinished",
    "AgentProgress",
    "AgentStarted",
    "Event",
    "HandoffAccepted",
    "HandoffOffered",
    "HandoffReclaimed",
    "Interrupted",
    "LinkLost",
    "LinkRestored",
    "OutboxDropped",
    "OutboxQueued",
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
    "decode_with",
    "decode_events",
    "encode_event",
    "encode_events",
    "newer_version",
]

FORMAT_VERSION: Final = 1
#: The version of an event holding sealed caller data (``sealed``): a reader older than
#: sealing would drop the caller silently, so it must refuse the event instead.
SEALED_VERSION: Final = 2

Effect = Literal["read", "write"]
OnInterrupt = Literal["complete", "cancel"]
Delivery = Literal["held", "delivered", "discarded", "announced", "compensated"]


class _Base(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=False
):
    """Fields every event has: ``seq`` in the journal, wall-clock ``at``, format ``v``."""

    seq: int = 0
    at: float = 0.0
    v: int = FORMAT_VERSION


# -- session lifecycle -------------------------------------------------------------


class SessionStarted(_Base, frozen=True, tag="session.started"):
    session_id: str
    agent: str
    caller: str | None = None
    epoch: int = 1
    userdata: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    personal: list[str] = []  # userdata keys that are personal (sealed at rest)
    sealed: str | None = None  # as stored: caller and personal userdata, encrypted


class SessionResumed(_Base, frozen=True, tag="session.resumed"):
    epoch: int
    gap_s: float = 0.0
    via: Literal["resume", "takeover", "handoff"] = "resume"
    owner: str = ""
    # how the new owner came: "token" (a client: older tokens are superseded), "id"
    # (trusted server code) or "caller" (a ring-back); "" before this was recorded
    channel: str = ""
    # why the previous owner lost the session: "lease_expired" (its worker stopped
    # heartbeating), "released" (it let go without ending), "link_lost" (the caller's
    # link was down), "taken_over" (taken from a live owner), "ended" (a ring-back
    # after the end); "" before this was recorded
    cause: str = ""


class SessionEnded(_Base, frozen=True, tag="session.ended"):
    reason: str = "ended"
    failed: bool = False  # the call ended in failure (archive outcome `failed`)


class SessionExpiredEvent(_Base, frozen=True, tag="session.expired"):
    reason: str = "resume window passed"
    # why nobody resumed it: "lease_expired" (its owner's lease had lapsed: a lost
    # worker), "link_lost" (the caller's link was down), "idle" (the owner was live, the
    # caller silent), "ended" (it had ended); "" before this was recorded
    cause: str = ""


# -- user and agent speech ------------------------------------------------------------


class UserPartial(_Base, frozen=True, tag="user.partial"):
    text: str


class UserTurn(_Base, frozen=True, tag="user.turn"):
    text: str


class AgentStarted(_Base, frozen=True, tag="agent.started"):
    utterance_id: str
    text: str = ""


class AgentProgress(_Base, frozen=True, tag="agent.progress"):
    utterance_id: str
    spoken_text: str
    text: str | None = None  # the utterance's full text when it grew while streaming


class AgentFinished(_Base, frozen=True, tag="agent.finished"):
    utterance_id: str
    text: str | None = None  # final full text, when it differs from what started


class Interrupted(_Base, frozen=True, tag="agent.interrupted"):
    utterance_id: str | None = None
    heard_text: str = ""
    unspoken_text: str = ""
    audio_end_ms: int | None = None
    overtaken: list[str] = []  # call ids in flight when the caller barged in


# -- tool calls ------------------------------------------------------------------------


class ToolRequested(_Base, frozen=True, tag="tool.requested"):
    call_id: str
    name: str
    args: dict[str, Any] = {}
    effect: Effect = "read"
    idempotent: bool = False
    on_interrupt: OnInterrupt = "complete"
    compensate: str | None = None
    timeout_s: float | None = None
    utterance_id: str | None = None  # the generation that asked for the call
    turn: int = 0  # user turns seen when the call was requested
    compensates: str | None = None  # the call this one undoes (a compensating call)
    wire_id: str | None = None  # the framework's id for it, when it reused an earlier one


class ToolStarted(_Base, frozen=True, tag="tool.started"):
    call_id: str
    attempt: int = 1
    idempotency_key: str = ""


class ToolProgress(_Base, frozen=True, tag="tool.progress"):
    call_id: str
    data: dict[str, Any] = {}


class ToolSucceeded(_Base, frozen=True, tag="tool.succeeded"):
    call_id: str
    result: Any = None


class ToolFailed(_Base, frozen=True, tag="tool.failed"):
    call_id: str
    error: str
    error_type: str = ""


class ToolCancelled(_Base, frozen=True, tag="tool.cancelled"):
    call_id: str
    reason: str = ""


class ToolInDoubt(_Base, frozen=True, tag="tool.in_doubt"):
    call_id: str
    resolution: Literal["rerun", "unknown"] = "unknown"


class ToolDeduplicated(_Base, frozen=True, tag="tool.deduplicated"):
    """A repeat of an earlier call's intent (same tool, same arguments, same user turn):
    it did not run; it ends with the outcome of ``duplicate_of``, copied here."""

    call_id: str
    duplicate_of: str
    status: Literal["succeeded", "failed", "cancelled", "unknown"] = "unknown"
    result: Any = None
    error: str | None = None
    error_type: str = ""


class ToolDelivery(_Base, frozen=True, tag="tool.delivery"):
    call_id: str
    decision: Delivery
    reason: str = ""


class ToolContextDelivered(_Base, frozen=True, tag="tool.context_delivered"):
    """An adapter put the call's outcome into its model's context: no longer owed to it."""

    call_id: str
    via: str = ""  # who gave it (an adapter's name), for the record


# -- app state, link, handoff ----------------------------------------------------------


class UserdataPatch(_Base, frozen=True, tag="userdata.patch"):
    set: dict[str, Any] = {}
    unset: list[str] = []
    sealed: str | None = None  # as stored: the personal keys of ``set``, encrypted


class LinkLost(_Base, frozen=True, tag="link.lost"):
    reason: str = ""


class LinkRestored(_Base, frozen=True, tag="link.restored"):
    gap_s: float = 0.0
    flushed: int = 0
    dropped: int = 0


class OutboxDropped(_Base, frozen=True, tag="link.outbox_dropped"):
    count: int = 1


class OutboxQueued(_Base, frozen=True, tag="link.outbox_queued"):
    """A message (or agent speech) held back while the link is down."""

    message: Any = None
    utterance_id: str | None = None  # held agent speech: queued again = its text updated
    text: str = ""  # the held speech's text
    dropped: int = 0  # the oldest held entries dropped first to make room


class OutboxSent(_Base, frozen=True, tag="link.outbox_sent"):
    """The oldest ``count`` held entries went out once the link was back."""

    count: int = 0


class HandoffOffered(_Base, frozen=True, tag="handoff.offered"):
    package_id: str
    to_agent: str
    reason: str = ""


class HandoffAccepted(_Base, frozen=True, tag="handoff.accepted"):
    package_id: str
    agent: str
    epoch: int
    from_agent: str = ""
    trimmed: int = 0  # the session's first N items are summarized in the target's context
    summary: str = ""  # the summary standing in for them


class HandoffReclaimed(_Base, frozen=True, tag="handoff.reclaimed"):
    package_id: str
    epoch: int


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

EVENT_TYPES: Final[tuple[type[Event], ...]] = Event.__args__

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)
_list_decoder = msgspec.json.Decoder(list[Event])


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
