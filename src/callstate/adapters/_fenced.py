"""A session fenced under a live speech-to-speech connection: one signal, then silence.

When another keeper takes the call over (``session.fenced``; the handle emits one
``session.fenced`` recovery event), the old connection may record nothing more. Rather
than a ``StaleEpochError`` out of every frame, an adapter's receive loop yields one
``FencedEvent`` and its iterator ends. ``Fence`` watches the session
(``wait_fenced()``), so this happens on a quiet line too: on the fence it lets the
adapter stop (unsubscribe, close the provider socket, which wakes a reader waiting on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from ..errors import CallstateError
from ..session import Session

__all__ = ["Fence", "FencedEvent"]


@dataclass(frozen=True)
class FencedEvent:
    """Yielded once when the session was taken over (``type == "callstate.fenced"``).

    The adapter has stopped recording and closed its provider connection; the iterator
    ends after this event and ``recv()`` raises ``error`` from then on. Stop feeding
    this connection: the call goes on where the newer owner holds it.

    Attributes:
        session_id: the callstate session.
        epoch: the epoch this handle held.
        error: why it was fenced (a ``StaleEpochError``, or the error a refused batch got).
    """

    session_id: str
    epoch: int
    error: CallstateError
    type: Literal["callstate.fenced"] = field(default="callstate.fenced", init=False)


class Fence:
    """Watches one session for a takeover on behalf of an adapter.

    Args:
        current: the session the adapter records into now (a handoff in this process
            moves it to the accepted handle, see :meth:`moving`).
        log: the adapter's logger (the fence is logged once, as a warning).
        stop: what the adapter does once, when the fence is seen (an awaitable
            callable: unsubscribe, cancel timers, close the provider socket).
    """

    def __init__(
        self,
        current: Callable[[], Session],
        log: logging.Logger,
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        self._current = current
        self._log = log
        self._stop = stop
        self._task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()
        self._settled.set()
        self._stopped = False
        self._said = False

    @property
    def session(self) -> Session:
        """The session watched: the adapter's current one."""
        return self._current()

    @property
    def fenced(self) -> bool:
        """True once the current session was fenced (not by a handoff under way here):
        record nothing more."""
        return self._settled.is_set() and self.session.fenced

    @contextlib.contextmanager
    def moving(self) -> Iterator[None]:
        """While the adapter hands its call to another agent in this process: accepting
        fences the old handle, which is no takeover; the accepted one is watched after."""
        self._settled.clear()
        try:
            yield
        finally:
            self._settled.set()

    @property
    def said(self) -> bool:
        """True once the ``FencedEvent`` was handed to the app."""
        return self._said

    def start(self) -> None:
        """Begin watching (from inside the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def cancel(self) -> None:
        """Stop watching (the adapter is closing)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def _watch(self) -> None:
        while True:
            watched = self.session
            await watched.wait_fenced()
            await self._settled.wait()
            if self.session is watched:  # else a handoff here moved on: watch the new one
                await self.stop()
                return

    async def stop(self) -> None:
        """Run the adapter's ``stop`` once, logging the fence once."""
        if self._stopped:
            return
        self._stopped = True
        self._log.warning(
            "session %s was fenced (%s); this connection records nothing more: stop it",
            self.session.id,
            self.session.error,
        )
        await self._stop()

    def check(self) -> None:
        """Raise the fencing error if the session was fenced (stop what is being done)."""
        error = self.session.error
        if error is not None:
            raise error

    async def event(self) -> FencedEvent:
        """Stop the adapter (once), then the one ``FencedEvent``; see :meth:`signal`."""
        await self.stop()
        return self.signal()

    def signal(self) -> FencedEvent:
        """The one ``FencedEvent``; afterwards raises the error that fenced the session.

        Raises:
            CallstateError: the fencing error, once the event was handed out.
        """
        error = self.session.error
        if error is None:
            msg = f"session {self.session.id!r} is not fenced"
            raise RuntimeError(msg)
        if self._said:
            raise error
        self._said = True
        return FencedEvent(self.session.id, self.session.state.epoch, error)
