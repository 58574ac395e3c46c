"""Checking server frames before the adapter acts on them (pure: no I/O).

The ``openai`` SDK builds server events without validating them, so a frame that is not
JSON ends its iterator, a JSON array comes through as a list, and an event missing a
field comes through without the attribute. The adapter checks the fields it reads here
and skips a frame that lacks them (the call goes on); only those fields are checked, so
a new enum value or an extra field from a newer API never costs an event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["BadFrame", "bad_frame", "frame_problem"]

_STR: Final = (str,)
_OPT_STR: Final = (str, type(None))
_OBJ: Final = (object,)

#: per event type, the attribute paths the adapter reads and the types they must have
_NEEDS: Final[dict[str, tuple[tuple[str, tuple[type, ...]], ...]]] = {
    "session.created": (("session", _OBJ),),
    "session.updated": (("session", _OBJ),),
    "conversation.item.added": (("item", _OBJ), ("item.id", _STR)),
    "conversation.item.done": (("item", _OBJ), ("item.id", _STR)),
    "conversation.item.created": (("item", _OBJ), ("item.id", _STR)),
    "conversation.item.input_audio_transcription.delta": (
        ("item_id", _STR),
        ("delta", _OPT_STR),
    ),
    "conversation.item.input_audio_transcription.completed": (
        ("item_id", _STR),
        ("transcript", _STR),
    ),
    "conversation.item.input_audio_transcription.failed": (("item_id", _STR),),
    "input_audio_buffer.committed": (("item_id", _STR),),
    "response.created": (("response", _OBJ), ("response.id", _STR)),
    "response.done": (("response", _OBJ),),
    "response.output_item.added": (("item", _OBJ), ("item.id", _STR), ("item.type", _STR)),
    "response.output_item.done": (("item", _OBJ), ("item.id", _STR)),
    "response.output_audio_transcript.delta": (("item_id", _STR), ("delta", _STR)),
    "response.output_text.delta": (("item_id", _STR), ("delta", _STR)),
    "response.output_audio.delta": (("item_id", _STR), ("delta", _STR)),
    "response.function_call_arguments.done": (
        ("call_id", _STR),
        ("name", _STR),
        ("arguments", _STR),
    ),
    "error": (("error", _OBJ), ("error.code", _OPT_STR), ("error.event_id", _OPT_STR)),
}

_MISSING: Final = object()


@dataclass(frozen=True)
class BadFrame:
    """A server frame the adapter skipped, and why.

    Attributes:
        problem: what was wrong, naming the field (``item: missing``).
        frame: the start of the frame as received (at most 200 characters).
    """

    problem: str
    frame: str


def _get(value: Any, path: str) -> Any:
    for name in path.split("."):
        if _scalar(value):
            return _MISSING  # a scalar or raw container where an object belongs
        value = getattr(value, name, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def frame_problem(event: Any) -> str | None:
    """Why ``event`` (as the SDK parsed it) cannot be acted on, or ``None`` if it can.

    Event types the adapter does not act on pass as long as they carry a ``type``.
    """
    if isinstance(event, list | str | int | float | bool) or event is None:
        return f"the frame is a JSON {type(event).__name__}, not an event object"
    kind = getattr(event, "type", None)
    if not isinstance(kind, str) or not kind:
        return f"type: expected a string, got {kind!r}"
    for path, types in _NEEDS.get(kind, ()):
        value = _get(event, path)
        if types is _OBJ:
            ok = value is not _MISSING and not _scalar(value)
            want = "an object"
        else:
            ok = value is not _MISSING and isinstance(value, types)
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        if not ok:
            got = "missing" if value is _MISSING else f"got {value!r:.40}"
            return f"{path} of {kind}: expected {want}, {got}"
    return None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | list | dict)


def bad_frame(problem: str, frame: Any) -> BadFrame:
    """A ``BadFrame`` for a skipped frame (raw text, bytes or the parsed value)."""
    if isinstance(frame, bytes):
        text = frame.decode("utf-8", "replace")
    elif isinstance(frame, str):
        text = frame
    else:
        try:
            text = json.dumps(
                frame.model_dump(warnings=False) if hasattr(frame, "model_dump") else frame
            )
        except (TypeError, ValueError):
            text = repr(frame)
    return BadFrame(problem=problem, frame=text[:200])
