"""Depth and size limits on what a session records: checked before an event is folded.

A value nested deeper than the interpreter's stack can decode is accepted by an
encoder running near the top of the stack and then refused by the decoder on resume,
deep inside a restore: the session would be stored but never load again. So every
payload is measured when it is recorded, without recursion (a value that contains
itself is simply infinitely deep), and refused with a typed error naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress, repeat
from typing import Any, Final

import msgspec

from ..errors import CodecError, ConfigError, PayloadTooDeep, PayloadTooLarge
from . import events as ev

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_TEXT_BYTES",
    "MAX_DEPTH_CEILING",
    "Limits",
    "admit",
    "check_limits",
    "check_value",
]

#: Levels of nesting a recorded value may have (a flat dict is 1 level).
DEFAULT_MAX_DEPTH: Final = 32
#: The most ``max_depth`` may be: deeper values would not decode inside a restore.
MAX_DEPTH_CEILING: Final = 200
#: Largest encoded userdata value, tool argument set, result or checkpoint.
DEFAULT_MAX_PAYLOAD_BYTES: Final = 1024 * 1024
#: Largest UTF-8 text of one user or agent utterance.
DEFAULT_MAX_TEXT_BYTES: Final = 64 * 1024

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Limits:
    """What a session may record (see ``Keeper(limits=...)``).

    Args:
        max_depth: levels of nesting of one userdata value, tool argument set, result
            or checkpoint (a flat dict is 1; a value that contains itself never fits);
            at most ``MAX_DEPTH_CEILING`` (200).
        max_payload_bytes: largest such value, JSON-encoded.
        max_text_bytes: largest user or agent utterance text, UTF-8-encoded.

    Raises:
        ConfigError: a limit is not an int >= 1, or ``max_depth`` is over the ceiling.
    """

    max_depth: int = DEFAULT_MAX_DEPTH
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_payload_bytes", "max_text_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"Limits.{name} must be an int >= 1, got {value!r:.80}"
                raise ConfigError(msg)
        if self.max_depth > MAX_DEPTH_CEILING:
            msg = f"Limits.max_depth must be <= {MAX_DEPTH_CEILING}, got {self.max_depth!r}"
            raise ConfigError(msg)


def _too_deep(field: str, limits: Limits) -> PayloadTooDeep:
    msg = (
        f"{field} is nested deeper than {limits.max_depth} levels (or contains itself); "
        "raise Limits.max_depth to record it"
    )
    return PayloadTooDeep(msg, field=field)


def _too_large(field: str, size: int, limit: int, what: str) -> PayloadTooLarge:
    msg = f"{field} is {size} bytes {what}, over the {limit}-byte cap"
    return PayloadTooLarge(msg, field=field)


_CONTAINERS: Final = (dict, list, tuple, set, frozenset)


def _of(children: Any, kind: type | tuple[type, ...]) -> Any:
    """The children that are instances of ``kind``, picked out at C speed."""
    return compress(children, map(isinstance, children, repeat(kind)))


def _parts(item: Any) -> tuple[list[Any], int]:
    """The children of ``item`` that are containers, and a lower bound of the encoded
    size of ``item`` without them (each child >= 1 byte, texts their length)."""
    children = item.values() if isinstance(item, dict) else item
    kinds = set(map(type, children))  # one C-speed pass; most lists hold one or two kinds
    size = 2 + len(children)
    if any(issubclass(k, str | bytes) for k in kinds):
        size += sum(map(len, _of(children, (str, bytes))))
    if not any(issubclass(k, _CONTAINERS) for k in kinds):
        return [], size
    return list(_of(children, _CONTAINERS)), size


#: Containers a quick check visits before leaving the value to :func:`_walk`.
_QUICK_CONTAINERS: Final = 64


def _quick(item: Any, depth: int, limits: Limits, left: list[int]) -> int:
    """The size :func:`_walk` finds for ``item`` (a lower bound of its encoding), or -1
    when this cannot tell at once: deeper than the limit (a cycle is), over the byte cap,
    more than ``left`` containers, or holding a tuple, set or container subclass.

    A tool's arguments and result, a userdata value: a few small dicts and lists, for
    which the general walk's bookkeeping costs more than the walk itself. Whatever it
    cannot vouch for, the walk decides (and names), so the answer is the walk's.
    """
    left[0] -= 1
    if left[0] < 0 or depth > limits.max_depth:
        return -1
    children = item.values() if type(item) is dict else item
    size = 2 + len(children)
    for child in children:
        kind = type(child)
        if kind is str or kind is bytes:
            size += len(child)
        elif kind is dict or kind is list:
            inner = _quick(child, depth + 1, limits, left)
            if inner < 0:
                return -1
            size += inner
        elif isinstance(child, str | bytes):
            size += len(child)
        elif isinstance(child, _CONTAINERS):
            return -1
    return size if size <= limits.max_payload_bytes else -1


def _walk(value: object, field: str, limits: Limits) -> None:
    """Refuse nesting over the limit or a value that contains itself, and values whose
    encoding cannot fit the byte cap, without recursion and without encoding them.

    Each container is visited once (a shared one is charged again wherever it recurs:
    sharing can make a small object encode huge); its size, a lower bound of its
    encoded bytes, and its height are kept by ``id`` once its children are done.
    """
    cap = limits.max_payload_bytes
    done: dict[int, tuple[int, int]] = {}  # id -> (size, height) of a finished container
    path: set[int] = set()  # ids of the containers being walked: meeting one is a cycle
    stack: list[tuple[Any, int, tuple[list[Any], int] | None]] = [(value, 1, None)]
    while stack:
        item, depth, parts = stack.pop()
        key = id(item)
        if parts is not None:  # its children are done
            path.discard(key)
            nested, size = parts
            height = 1
            for child in nested:
                child_size, child_height = done[id(child)]
                size += child_size
                height = max(height, child_height + 1)
            if size > cap:
                msg = f"{field} encodes to at least {size - 1} bytes, over the {cap}-byte cap"
                raise PayloadTooLarge(msg, field=field)
            done[key] = (size, height)
            continue
        known = done.get(key)
        if known is not None:
            if depth + known[1] - 1 > limits.max_depth:
                raise _too_deep(field, limits)
            continue
        if key in path or depth > limits.max_depth:
            raise _too_deep(field, limits)
        path.add(key)
        parts = _parts(item)
        stack.append((item, depth, parts))
        stack.extend(zip(parts[0], repeat(depth + 1), repeat(None)))


def check_value(value: object, *, field: str, limits: Limits) -> None:
    """Refuse a payload deeper or larger (JSON-encoded) than ``limits`` allow.

    A value JSON cannot carry passes: the codec check that follows names it.

    Raises:
        PayloadTooDeep: ``value`` is nested deeper than ``limits.max_depth`` (or than
            the encoder can go).
        PayloadTooLarge: it encodes to more than ``limits.max_payload_bytes``.
    """
    if value is None or isinstance(value, bool | int | float):
        return
    if isinstance(value, str):
        check_text(value, field=field, limits=limits, cap=limits.max_payload_bytes)
        return
    if isinstance(value, _CONTAINERS):
        plain = type(value) is dict or type(value) is list
        if not plain or _quick(value, 1, limits, [_QUICK_CONTAINERS]) < 0:
            _walk(value, field, limits)
    try:
        size = len(_json.encode(value))
    except RecursionError as exc:  # within a max_depth set above what the stack holds
        msg = f"{field} is nested too deeply to encode; lower Limits.max_depth"
        raise PayloadTooDeep(msg, field=field) from exc
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return
    if size > limits.max_payload_bytes:
        raise _too_large(field, size, limits.max_payload_bytes, "encoded")


def check_text(value: object, *, field: str, limits: Limits, cap: int | None = None) -> None:
    """Refuse a str longer than ``cap`` (default ``limits.max_text_bytes``) in UTF-8.

    Raises:
        PayloadTooLarge: the text is over the cap.
        CodecError: utterance text (no ``cap``) that is neither a str nor None.
    """
    limit = limits.max_text_bytes if cap is None else cap
    if type(value) is not str:
        if value is None or cap is not None:
            return  # optional text; a payload str subclass is the codec check's
        msg = f"{field} must be a str, got {type(value).__name__} {value!r:.60}"
        raise CodecError(msg)
    if len(value) * 4 <= limit:
        return  # a char is at most 4 bytes: short text passes without encoding
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _too_large(field, size, limit, "of UTF-8 text")


def _payloads(event: ev.Event) -> list[tuple[str, object]]:
    """(field name for errors, value) of every app payload ``event`` carries."""
    match event:
        case ev.UserdataPatch(set=values):
            return [(f"userdata[{k!r:.60}]", v) for k, v in values.items()]
        case ev.SessionStarted(userdata=userdata, metadata=metadata):
            pairs = [(f"userdata[{k!r:.60}]", v) for k, v in userdata.items()]
            return [*pairs, ("metadata", metadata)]
        case ev.ToolRequested(call_id=call_id, args=args):
            return [(f"args of call {call_id!r:.60}", args)]
        case ev.ToolProgress(call_id=call_id, data=data):
            return [(f"checkpoint of call {call_id!r:.60}", data)]
        case ev.ToolSucceeded(call_id=call_id, result=result):
            return [(f"result of call {call_id!r:.60}", result)]
    return []


#: Per speech event type, the fields holding text.
_TEXTS: Final[dict[type, tuple[str, ...]]] = {
    ev.UserPartial: ("text",),
    ev.UserTurn: ("text",),
    ev.AgentStarted: ("text",),
    ev.AgentProgress: ("spoken_text", "text"),
    ev.AgentFinished: ("text",),
    ev.Interrupted: ("heard_text", "unspoken_text"),
}


def check_limits(event: ev.Event, limits: Limits) -> None:
    """Refuse an event whose payloads or texts are over ``limits``; names the field.

    Raises:
        PayloadTooDeep: a payload is nested too deeply.
        PayloadTooLarge: a payload or text is too large.
    """
    kind = type(event)
    texts = _TEXTS.get(kind)
    if texts is not None:
        tag = kind.__struct_config__.tag
        for name in texts:
            check_text(getattr(event, name), field=f"event {tag!r} `$.{name}`", limits=limits)
        return
    for field, value in _payloads(event):
        check_value(value, field=field, limits=limits)


#: Per speech event type, its required text fields and its optional one: what
#: :func:`admit` checks in one pass.
_SPEECH: Final[dict[type, tuple[tuple[str, ...], str | None]]] = {
    ev.UserPartial: (("text",), None),
    ev.UserTurn: (("text",), None),
    ev.AgentStarted: (("utterance_id", "text"), None),
    ev.AgentProgress: (("utterance_id", "spoken_text"), "text"),
    ev.AgentFinished: (("utterance_id",), "text"),
    ev.Interrupted: (("heard_text", "unspoken_text"), "utterance_id"),
}


def _barge_ok(event: ev.Interrupted) -> bool:
    """A barge-in's fields besides its texts have their exact, encodable types."""
    end, overtaken = event.audio_end_ms, event.overtaken
    if end is not None and type(end) is not int:  # JSON carries an int of any size
        return False
    return type(overtaken) is list and (
        not overtaken or all(type(c) is str and c.isascii() for c in overtaken)
    )


def admit(event: ev.Event, limits: Limits) -> None:
    """Refuse an event that :func:`check_limits` or ``events.check_recorded`` refuses.

    The hot path's check: a speech event whose texts are ASCII ``str`` within
    ``limits.max_text_bytes`` (and whose ``seq``, ``at`` and ``v`` have their exact
    types) passes both in one pass; anything else goes through both, which name the
    field that failed.

    Raises:
        PayloadTooDeep, PayloadTooLarge, CodecError: as those two checks.
    """
    texts = _SPEECH.get(type(event))
    if (
        texts is not None
        and type(event.seq) is int
        and type(event.at) is float
        and type(event.v) is int
        and event.at - event.at == 0.0  # JSON has no NaN or inf
    ):
        cap = limits.max_text_bytes
        required, optional = texts
        for name in required:
            value = getattr(event, name)
            if type(value) is not str or len(value) > cap or not value.isascii():
                break
        else:
            if optional is None:
                return
            value = getattr(event, optional)
            plain = value is None or (type(value) is str and len(value) <= cap and value.isascii())
            if plain and (type(event) is not ev.Interrupted or _barge_ok(event)):
                return
    check_limits(event, limits)
    ev.check_recorded(event)
