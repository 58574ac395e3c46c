"""Tool calls: the registry and policies, the guard, outcomes, and their reconciliation.

``registry`` (tools, policies, ``ToolContext``, ``ToolOutcome``), ``arguments`` (a
signature as one msgspec type: argument checks and the JSON schema), ``intent`` (a
write asked for again in one user turn runs once), ``reconcile`` (pure
barge-in and in-doubt decisions), ``guard`` (write-ahead intent, running a call, its
outcome), ``outcomes`` (terminal events, held delivery, outcomes that land on another
handle), ``late`` (outcomes stored for a session's next owner), ``barge_in``
(interrupt, contradict) and ``lifecycle`` (in-doubt resolution on resume, settling calls
at the end, letting them go on close).
"""

from .registry import ToolContext, ToolOutcome, ToolRegistry, ToolSpec

__all__ = ["ToolContext", "ToolOutcome", "ToolRegistry", "ToolSpec"]
