"""The small pieces ``LiveKitRecovery`` plugs into LiveKit with.

A ``TextOutput`` placed first in the transcription chain (what reaches the output is
what the caller heard), the speech whose task is running (LiveKit keeps it in a context
variable for every speech task, so text, messages and interruptions can be told apart
by speech), userdata as plain data, and the note a decided result gets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from livekit.agents import llm
from livekit.agents.voice import io
from livekit.agents.voice.agent_activity import _SpeechHandleContextVar

from ...journal.context import call_output
from ...journal.state import ToolCall

__all__ = ["Tap", "call_items", "current_speech", "delivery_note", "plain_userdata"]


def delivery_note(call: ToolCall) -> str:
    """A system note telling the model what to do with a result whose delivery was decided."""
    return (
        f"The caller interrupted while {call.name} (call {call.call_id}) ran and has not "
        f"heard how it ended: {call_output(call)}"
    )


class Tap(io.TextOutput):
    """First in the transcription chain: records what reaches the output as heard."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[None]],
        heard: Callable[[str], None],
        next_in_chain: io.TextOutput | None,
    ) -> None:
        super().__init__(label="callstate", next_in_chain=next_in_chain)
        self._ready = ready  # waits out a handoff under way
        self._heard = heard  # records text the caller heard

    async def capture_text(self, text: str) -> None:
        if self.next_in_chain is not None:
            await self.next_in_chain.capture_text(text)  # heard once the output took it
        await self._ready()
        self._heard(text)

    def flush(self) -> None:
        if self.next_in_chain is not None:
            self.next_in_chain.flush()


def current_speech() -> str | None:
    """The id of the speech whose task is running (LiveKit sets it for each speech task)."""
    handle = _SpeechHandleContextVar.get(None)
    return handle.id if handle is not None else None


def plain_userdata(value: Any) -> dict[str, Any] | None:
    """LiveKit userdata as a dict (a dict, a dataclass or a pydantic model), else None."""
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        out = dump()
        return out if isinstance(out, dict) else None
    return None


def call_items(call: ToolCall) -> list[llm.ChatItem]:
    """A callstate call as LiveKit's function call and output items."""
    args = json.dumps(call.args, separators=(",", ":"), default=str)
    return [
        llm.FunctionCall(call_id=call.call_id, name=call.name, arguments=args),
        llm.FunctionCallOutput(
            call_id=call.call_id,
            name=call.name,
            output=call_output(call),
            is_error=call.status == "failed",
        ),
    ]
