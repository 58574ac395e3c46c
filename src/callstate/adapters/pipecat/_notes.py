"""Callstate notes for a Pipecat model: what they say, and how one is written into an
``LLMContext``."""

from __future__ import annotations

from openai.types.chat import ChatCompletionDeveloperMessageParam, ChatCompletionSystemMessageParam

from ...journal.context import call_output
from ...journal.state import ToolCall

__all__ = ["delivery_note", "landed_note", "note_message"]


def note_message(
    note: str, *, first: bool
) -> ChatCompletionDeveloperMessageParam | ChatCompletionSystemMessageParam:
    """A callstate note (resume, handoff, held result) as a message of an ``LLMContext``.

    Pipecat takes a ``system`` message that comes first in the context for the system
    prompt (deprecated since Pipecat 1.9: the prompt belongs on the LLM service, and a
    realtime service would send the note as its instructions), so a note that may come
    first is a ``developer`` message, which every Pipecat adapter keeps in the
    conversation (as ``user`` where the provider has no such role).
    """
    if first:
        return {"role": "developer", "content": note}
    return {"role": "system", "content": note}


def delivery_note(call: ToolCall) -> str | None:
    """A system note for the model about a result whose spoken delivery was decided."""
    what = f"{call.name} (call {call.call_id})"
    if call.delivery == "announced":
        return (
            f"The caller interrupted while {what} ran and has not heard how it ended. "
            f"Tell them now what was done: {call_output(call)}"
        )
    if call.delivery == "delivered":
        return (
            f"The caller has not heard the result of {what} yet; give it to them now: "
            f"{call_output(call)}"
        )
    if call.delivery == "discarded":
        return (
            f"The caller moved on while {what} ran; do not bring up its result unless "
            "they ask for it."
        )
    return None


def landed_note(call: ToolCall) -> str:
    """A system note for a call this pipeline did not start, whose outcome just landed."""
    what = f"{call.name} (call {call.call_id}), started before this pipeline took the call,"
    if call.delivery == "held":
        return f"{what} has finished: {call_output(call)}"
    return (
        f"{what} has finished: {call_output(call)}. The caller has not heard this yet; tell them."
    )
