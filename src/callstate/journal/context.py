"""SessionState → OpenAI-format chat messages (shared by sessions, handoff and adapters).

Assistant text appears as the caller heard it. Every assistant ``tool_calls`` entry is
followed by exactly one ``tool`` message carrying that call's outcome (``running`` while
it has none), at the point the call was requested: a result that lands after a barge-in
is in the context at once. A result whose spoken delivery was held or decided after a
barge-in says so (``delivery``, and a ``delivery_note`` telling the model to wait, to
tell the caller, or to let it go).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .state import SessionState, ToolCall

__all__ = ["build_messages", "call_output", "conversation_of"]

_json = msgspec.json.Encoder()

#: What the model is told to do with a result, per spoken-delivery decision.
DELIVERY_NOTES: Final = {
    "held": "the caller interrupted; do not voice this until they finish their turn",
    "delivered": "share this result with the caller now",
    "discarded": "the caller moved on; do not bring this up unless they ask",
    "announced": "this changed something: tell the caller what was done",
    "compensated": "the caller contradicted this; it was undone, tell them so",
}


def call_output(call: ToolCall) -> str:
    """The ``tool`` message content for a call, whatever state it is in."""
    match call.status:
        case "succeeded":
            payload: dict[str, Any] = {"status": "succeeded", "result": call.result}
        case "failed":
            payload = {"status": "failed", "error": call.error}
        case "cancelled":
            payload = {"status": "cancelled", "reason": call.error or "cancelled"}
        case "unknown":
            payload = {
                "status": "unknown",
                "note": "the call may or may not have taken effect; verify with the caller "
                "before acting on it again",
            }
        case _:
            payload = {"status": "running"}
    if call.duplicate_of is not None:  # the same request, made again: it ran once
        payload["duplicate_of"] = call.duplicate_of
    if call.delivery is not None:
        payload["delivery"] = call.delivery
        payload["delivery_note"] = DELIVERY_NOTES[call.delivery]
    return _json.encode(payload).decode()


def build_messages(state: SessionState, *, system: str | None = None) -> list[dict[str, Any]]:
    """The conversation of ``state`` as OpenAI chat messages."""
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    if state.summary:  # what a handoff trimmed away, summarized
        messages.append({"role": "system", "content": state.summary})
    pending_calls: list[ToolCall] = []
    seen: set[str] = set()  # one tool_calls entry (and one result) per call id

    def close_calls() -> None:
        if not pending_calls:
            return
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c.call_id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": _json.encode(c.args).decode()},
                    }
                    for c in pending_calls
                ],
            }
        )
        for c in pending_calls:
            messages.append({"role": "tool", "tool_call_id": c.call_id, "content": call_output(c)})
        pending_calls.clear()

    calls = state.calls
    append = messages.append  # a long call's context is thousands of items: keep the loop lean
    for item in state.items[state.summarized :]:  # the rest is in state.summary
        kind = item.kind
        if kind == "call":
            call = calls.get(item.id)
            if call is not None and call.call_id not in seen:
                seen.add(call.call_id)
                pending_calls.append(call)
            continue
        if pending_calls:
            close_calls()
        if kind == "user":
            append({"role": "user", "content": item.text})
        elif kind == "assistant" and (heard := item.text if item.done else item.spoken):
            # an utterance still playing (or cut off by a drop) counts as far as it was heard
            append({"role": "assistant", "content": heard})
    close_calls()
    return messages


#: a shallow copy of a struct (replace with no changes), half the cost of ``copy.copy``
_copy: Final = msgspec.structs.replace


def conversation_of(state: SessionState) -> SessionState:
    """What :func:`build_messages` reads of ``state``, kept as it stands now.

    ``build_messages`` over the result later gives what it gives over ``state`` now,
    whatever ``state`` records meanwhile. It costs a pointer per item: the fold never
    changes an item in place, so the item list is copied shallowly; calls, which the
    fold does update in place, are copied one by one.
    """
    return SessionState(
        items=state.items[state.summarized :],
        calls={call_id: _copy(call) for call_id, call in state.calls.items()},
        summary=state.summary,
    )
