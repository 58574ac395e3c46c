"""Rebuilding a conversation in a fresh OpenAI Realtime session (pure: no I/O).

Shared by every adapter that speaks the Realtime protocol: the raw connection
(``openai_realtime``), the Agents SDK's and Pipecat's ``OpenAIRealtimeLLMService``.
A Realtime session cannot be resumed server-side, so a new one is filled from the
checkpoint: ``session.update`` with the agent's config, then one
``conversation.item.create`` per item, in order. User turns become ``input_text``
messages, tool calls ``function_call`` items followed by their ``function_call_output``
once the call has an outcome, and assistant turns ``output_text`` messages holding what
the caller heard (assistant audio cannot be re-created). Because text-only assistant
history can push the model into answering in text, the closing system message tells it
to keep answering by voice.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from ..journal.context import call_output
from ..journal.state import SessionState, ToolCall

__all__ = [
    "VOICE_NOTE",
    "Replay",
    "cut_note",
    "function_output",
    "merge_config",
    "replay",
    "without_voice",
]

#: Appended to every resume note: text-only history must not turn the agent into a chatbot.
VOICE_NOTE: Final = "Keep answering the caller by voice (spoken audio), as before."

_json = msgspec.json.Encoder()


@dataclass
class Replay:
    """The client events that rebuild a conversation, and what they put in the session."""

    events: list[dict[str, Any]] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)  # ids of replayed items, in order
    calls: set[str] = field(default_factory=set)  # call ids with a function_call item
    answered: set[str] = field(default_factory=set)  # call ids with their output
    ids: dict[str, str] = field(default_factory=dict)  # callstate item id -> replayed item id
    needs_answer: bool = False  # the agent owes the caller a turn


def merge_config(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a ``session.update`` patch to a config: nested objects merge, the rest replaces."""
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        out[key] = (
            merge_config(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
        )
    return out


def without_voice(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without ``audio.output.voice`` (and the objects that held only it)."""
    out = dict(config)
    audio = dict(out.get("audio") or {})
    output = dict(audio.get("output") or {})
    if "voice" not in output:
        return out
    del output["voice"]
    if output:
        audio["output"] = output
    else:
        audio.pop("output", None)
    if audio:
        out["audio"] = audio
    else:
        out.pop("audio", None)
    return out


def function_output(call: ToolCall) -> str:
    """The ``function_call_output`` text for a call: its outcome as the context shows it."""
    return call_output(call)


def cut_note(item: Any) -> str:
    """Tell the model its last answer was cut off by the drop, and where."""
    heard = getattr(item, "spoken", "") if item is not None else ""
    if heard:
        return f"Your last answer was cut off after “{heard}”: finish it briefly."
    return "Your last answer was cut off before the caller heard any of it: give it again."


def _message(role: str, kind: str, text: str) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def replay(
    state: SessionState,
    *,
    config: dict[str, Any] | None,
    note: str,
    prefix: str,
    answered_later: Collection[str] = (),
) -> Replay:
    """The events that restore ``state``'s conversation into an empty Realtime session.

    Args:
        state: the session's checkpoint.
        config: the agent's session config (the ``session`` of ``session.update``).
        note: the resume note for the model (``VOICE_NOTE`` is added to it).
        prefix: a short prefix for the replayed item ids (unique per Realtime session).
        answered_later: call ids whose output the client sends itself once the replay is
            in (a handler still delivering its result): each is replayed as an open
            ``function_call`` even when the checkpoint has its outcome, so the new
            session gets exactly one output for it.
    """
    out = Replay()
    if config:
        out.events.append({"type": "session.update", "session": {"type": "realtime", **config}})

    def add(item: dict[str, Any], local: str | None = None) -> None:
        item_id = f"{prefix}{len(out.item_ids)}"
        out.item_ids.append(item_id)
        if local:
            out.ids[local] = item_id
        out.events.append({"type": "conversation.item.create", "item": {"id": item_id, **item}})

    if state.summary:
        add(_message("system", "input_text", state.summary))
    last = ""
    for n, item in enumerate(state.items[state.summarized :], start=state.summarized):
        if item.kind == "user" and item.text:
            add(_message("user", "input_text", item.text), f"user@{n}")
            last = "user"
        elif item.kind == "assistant":
            heard = item.text if item.done else item.spoken
            if heard:
                add(_message("assistant", "output_text", heard), item.id)
                last = "assistant"
        elif item.kind == "call":
            call = state.calls.get(item.id)
            if call is None or call.call_id in out.calls:
                continue
            args = _json.encode(call.args).decode()
            add(
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": args,
                },
                call.call_id,
            )
            out.calls.add(call.call_id)
            last = "running"
            if call.terminal and call.call_id not in answered_later:
                last = "call"
                add(
                    {
                        "type": "function_call_output",
                        "call_id": call.call_id,
                        "output": function_output(call),
                    }
                )
                out.answered.add(call.call_id)
    text = f"{note} {VOICE_NOTE}".strip() if note else VOICE_NOTE
    add(_message("system", "input_text", text))
    out.needs_answer = last in ("user", "call") or bool(state.owed)
    return out
