"""A conversation as Gemini ``clientContent`` turns (pure: no I/O).

Used when a Live session cannot be resumed with a handle: the conversation callstate
recorded goes into the new session as turns, newest kept when the configured
context-window compression's sliding window would not hold them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from google.genai import types

__all__ = ["CHARS_PER_TOKEN", "function_response", "replay_turns", "window_tokens"]

#: a rough token size, to keep a replay inside the sliding window it will be cut to
CHARS_PER_TOKEN = 4


def window_tokens(config: types.LiveConnectConfig) -> int | None:
    """The token budget a replay must fit: the sliding window's target, else its trigger."""
    cwc = config.context_window_compression
    if cwc is None:
        return None
    target = cwc.sliding_window.target_tokens if cwc.sliding_window is not None else None
    return target or cwc.trigger_tokens


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        text += f"(called {fn.get('name')} with {fn.get('arguments')})"
    if message.get("role") == "tool":
        text = f"(result of call {message.get('tool_call_id')}: {text})"
    elif message.get("role") == "system":
        text = f"(note: {text})"
    return text


def replay_turns(
    messages: Sequence[dict[str, Any]], *, max_tokens: int | None = None
) -> list[types.Content]:
    """``clientContent`` turns for OpenAI-format ``messages`` (assistant → ``model``,
    everything else → ``user``; tool calls and results as text), consecutive turns of
    one role merged. With ``max_tokens`` the oldest turns are left out until the rest fit;
    the last turn (the resume note) is always kept.
    """
    turns: list[tuple[str, str]] = []
    for m in messages:
        role = "model" if m.get("role") == "assistant" else "user"
        text = _text(m)
        if not text:
            continue
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n{text}")
        else:
            turns.append((role, text))
    if max_tokens is not None:
        budget = max_tokens * CHARS_PER_TOKEN
        while len(turns) > 1 and sum(len(t) for _, t in turns) > budget:
            turns.pop(0)
    return [types.Content(role=r, parts=[types.Part(text=t)]) for r, t in turns]


def function_response(name: str, call_id: str, output: str) -> types.FunctionResponse:
    """The ``toolResponse`` entry for a call's recorded output (``call_output`` JSON)."""
    return types.FunctionResponse(id=call_id, name=name, response={"output": json.loads(output)})
