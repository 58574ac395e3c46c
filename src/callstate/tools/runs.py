"""The tool calls of one keeper: its registry, the calls running here, parked outcomes.

A keeper holds one :class:`ToolRuns`; every function of the guard is handed it with
the session handle it acts on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .registry import DEFAULT_MAX_RESULT_BYTES, ToolOutcome, ToolRegistry, ToolSpec

if TYPE_CHECKING:
    from ..runtime.handle import Handle
    from ..runtime.host import Host

__all__ = ["Run", "ToolRuns"]


@dataclass(slots=True)
class Run:
    """A tool function running in this process."""

    session: Handle  # the handle that started it
    spec: ToolSpec
    task: asyncio.Task[ToolOutcome]
    cancel_reason: str | None = None  # why the guard cancelled it, if it did


class ToolRuns:
    """Tool calls of one keeper.

    Attributes:
        host: the keeper's shared services.
        registry: the tools calls run through (None: every call fails as unknown).
        running: calls whose function runs in this process, by (session id, call id),
            until their outcome has landed; a repeated call id awaits the run.
        parked: outcomes whose own handle could not record them, by session and call
            id, until a writable handle of the session is adopted here.
    """

    def __init__(self, host: Host, registry: ToolRegistry | None) -> None:
        self.host = host
        self.registry = registry
        self.running: dict[tuple[str, str], Run] = {}
        self.parked: dict[str, dict[str, ToolOutcome]] = {}

    @property
    def max_result_bytes(self) -> int:
        """The largest encoded result, checkpoint or argument set a call may record."""
        reg = self.registry
        return reg.max_result_bytes if reg is not None else DEFAULT_MAX_RESULT_BYTES

    @property
    def dedupe_intent(self) -> bool:
        """The registry's rule for deduplicating a write asked for again in one turn."""
        reg = self.registry
        return reg.dedupe_intent if reg is not None else True

    def spec(self, name: str) -> ToolSpec | None:
        """The registered tool ``name``, or None."""
        reg = self.registry
        return reg.get(name) if reg is not None and name in reg else None

    def names(self) -> frozenset[str]:
        """The registered tool names."""
        return self.registry.names() if self.registry is not None else frozenset()

    def of(self, session_id: str) -> list[Run]:
        """The calls of ``session_id`` running here."""
        return [r for (sid, _), r in self.running.items() if sid == session_id]
