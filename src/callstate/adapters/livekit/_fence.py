"""A fenced session: another worker took the call over, so this ``AgentSession`` stops.

The handle says so once (``session.fenced``, ``await session.wait_fenced()``, one
``session.fenced`` recovery event); the recorder then records nothing more, and the app
hears it once, through ``LiveKitRecovery.on_fenced(callback)``, instead of a
``StaleEpochError`` per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ...errors import CallstateError
from ...session import Session

__all__ = ["Fence", "FencedCallback"]

log = logging.getLogger("callstate.adapters.livekit")

#: Called once with the session that was fenced and why (a ``StaleEpochError``).
FencedCallback = Callable[[Session, CallstateError], None]


class Fence:
    """Watches the recorded session for a takeover and signals it once.

    Args:
        session: returns the session currently recorded into (a handoff replaces it).
        moving: True while a handoff this recorder makes is being accepted (its source
            is fenced by that accept: no takeover).
        stopped: called once when fenced, before the app's callbacks (stop recording).
    """

    def __init__(
        self,
        session: Callable[[], Session],
        moving: Callable[[], bool],
        stopped: Callable[[], None],
    ) -> None:
        self._session = session
        self._moving = moving
        self._stopped = stopped
        self._callbacks: list[FencedCallback] = []
        self._said: Session | None = None  # the fenced handle, once signalled
        self._watch: asyncio.Task[None] | None = None

    @property
    def fenced(self) -> bool:
        """True once the session recorded into was fenced (signalled or not yet)."""
        return self._said is not None or self.check()

    def on_fenced(self, callback: FencedCallback) -> Callable[[], None]:
        """Call ``callback(session, error)`` once the session is fenced (at once if it is).

        Returns:
            A function that unsubscribes it.
        """
        self._callbacks.append(callback)
        if self._said is not None and self._said.error is not None:
            callback(self._said, self._said.error)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def follow(self) -> None:
        """Watch the current session (at attach, and after a handoff is accepted)."""
        if self._watch is not None:
            self._watch.cancel()
        with contextlib.suppress(RuntimeError):  # no running loop: checked per event
            self._watch = asyncio.get_running_loop().create_task(self._wait(self._session()))

    async def _wait(self, session: Session) -> None:
        await session.wait_fenced()
        if session is self._session() and not self._moving():
            self.check()

    def check(self) -> bool:
        """True when the current session is fenced; signals it the first time."""
        session = self._session()
        error = session.error
        if not session.fenced or error is None or self._moving():
            return False
        if self._said is session:
            return True
        self._said = session
        log.warning(
            "callstate: session %s was taken over (%s); this AgentSession records nothing "
            "more: close it",
            session.id,
            error,
        )
        self._stopped()
        for callback in list(self._callbacks):
            try:
                callback(session, error)
            except Exception:  # an app's callback must not break LiveKit's event loop
                log.exception("callstate: an on_fenced callback failed")
        return True

    def stop(self) -> None:
        """Stop watching (the agent session closed)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
