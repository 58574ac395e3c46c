"""Where callstate's spans go in a Pipecat trace: under the conversation and turn spans.

Pipecat keeps its trace context in a pipeline-scoped ``TracingContext`` rather than in
the current OpenTelemetry context; the processor registers this lookup for its session
(see :mod:`callstate.observe.parents`) when the pipeline sets it up with tracing on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipecat.utils.tracing.tracing_context import TracingContext

    from ...observe.parents import Parent, SpanRole

__all__ = ["trace_parent"]


def trace_parent(tracing: TracingContext | None) -> Parent | None:
    """A parent lookup over Pipecat's tracing context (None when tracing is off)."""
    if tracing is None:
        return None

    def parent(role: SpanRole) -> object | None:
        if role == "step":
            return tracing.get_turn_context() or tracing.get_conversation_context()
        return tracing.get_conversation_context()

    return parent
