"""How a callstate note is written into a Pipecat ``LLMContext``."""

from __future__ import annotations

from openai.types.chat import ChatCompletionDeveloperMessageParam, ChatCompletionSystemMessageParam

__all__ = ["note_message"]


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
