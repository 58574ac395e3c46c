"""A sink that keeps every ``RecoveryEvent`` it is given, for tests and demos."""

from __future__ import annotations

import asyncio

from ..observe.recovery import RecoveryEvent

__all__ = ["CapturingSink"]


class CapturingSink:
    """Collects events; ``await sink.wait_for(kind)`` returns once one has arrived.

    Use it as ``Keeper(sinks=[sink])`` or ``keeper.add_sink(sink)``.
    """

    def __init__(self) -> None:
        self.events: list[RecoveryEvent] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: RecoveryEvent) -> None:
        self.events.append(event)
        self._arrived.set()

    def kinds(self) -> list[str]:
        """The kinds received, in order."""
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[RecoveryEvent]:
        """The events of one kind, in order."""
        return [e for e in self.events if e.kind == kind]

    async def wait_for(self, kind: str, count: int = 1) -> None:
        """Wait until ``count`` events of ``kind`` arrived.

        This waits for the keeper's observer task to deliver, never for time to pass;
        bound it with ``asyncio.timeout`` in tests.
        """
        while len(self.of(kind)) < count:
            self._arrived.clear()
            await self._arrived.wait()

    def clear(self) -> None:
        """Forget everything received so far."""
        self.events.clear()
