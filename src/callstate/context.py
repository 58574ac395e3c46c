"""SessionState → OpenAI-format chat messages (shared by sessions, handoff and adapters).

Assistant text appears as the caller heard it. Every assistant ``tool_calls`` entry is
followed by exactly one ``tool`` message carrying that call's outcome.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .state import SessionState, ToolCall

__all__ = ["build_messages", "call_output"]

_json = msgspec.json.Encoder()


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
    return _json.encode(payload).decode()


def build_messages(state: SessionState, *, system: str | None = None) -> list[dict[str, Any]]:
    """The conversation of ``state`` as OpenAI chat messages."""
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    pending_calls: list[ToolCall] = []

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

    for item in state.items:
        if item.kind == "call":
            call = state.calls.get(item.id)
            if call is not None:
                pending_calls.append(call)
            continue
        close_calls()
        if item.kind == "user":
            messages.append({"role": "user", "content": item.text})
        elif item.text:
            messages.append({"role": "assistant", "content": item.text})
    close_calls()
    return messages
