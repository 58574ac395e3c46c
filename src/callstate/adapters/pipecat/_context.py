"""Seeding a Pipecat ``LLMContext`` from what callstate kept: a plan, a package, a session."""

from __future__ import annotations

from typing import Any

from pipecat.processors.aggregators.llm_context import LLMContext

from ...session import Session
from .._seed import Source, context_messages
from ._notes import note_message

__all__ = ["context_messages", "seed_context"]


def seed_context(
    context: LLMContext | None,
    source: Source,
    *,
    system: str | None = None,
    session: Session | None = None,
) -> LLMContext:
    """Replace the messages of ``context`` (or a new one) with :func:`context_messages`.

    ``session``: the session accepted from a ``HandoffPackage`` source (see
    :func:`context_messages`). ``system`` puts a prompt first in the context; Pipecat
    1.9+ wants it on the LLM service instead (``Settings(system_instruction=...)``).

    Returns:
        The seeded context, ready for ``LLMContextAggregatorPair(context)``.
    """
    messages: list[Any] = context_messages(source, system=system, session=session)
    if system is None and messages and messages[0].get("role") == "system":
        # nothing was said yet: the note comes first, where Pipecat would take it for the
        # system prompt (which belongs on the LLM service)
        messages[0] = note_message(messages[0]["content"], first=True)
    if context is None:
        return LLMContext(messages)
    context.set_messages(messages)
    return context
