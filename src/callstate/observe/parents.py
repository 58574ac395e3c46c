"""Where a session's spans belong in a framework's own trace.

An adapter whose framework keeps its trace context outside ``contextvars`` (Pipecat
keeps a pipeline-scoped ``TracingContext``) registers a function here for the session
it drives; trace exporters ask it for a parent when they start a span. The function
gets ``"leg"`` (the span of the whole call leg) or ``"step"`` (a tool call, a handoff)
and returns the framework's context object, or None. Frameworks that use the current
context (LiveKit) need nothing here. Nothing in this module imports a tracing library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["Parent", "SpanRole", "forget", "lookup", "register"]

SpanRole = Literal["leg", "step"]
Parent = Callable[[SpanRole], object | None]

_parents: dict[str, Parent] = {}


def register(session_id: str, parent: Parent) -> None:
    """Let exporters ask ``parent`` where spans of ``session_id`` belong."""
    _parents[session_id] = parent


def forget(session_id: str, parent: Parent | None = None) -> None:
    """Stop asking (only if ``parent`` is still the registered one, when given)."""
    if parent is None or _parents.get(session_id) is parent:
        _parents.pop(session_id, None)


def lookup(session_id: str, role: SpanRole) -> object | None:
    """The registered parent context for a span of ``session_id``, if any."""
    fn = _parents.get(session_id)
    if fn is None:
        return None
    try:
        return fn(role)
    except Exception:  # a broken adapter hook must not reach the call path
        return None
