"""Outcomes owed to the model: what no model context has been given yet, and who listens.

An outcome is owed to the model from the moment it lands (``tool.succeeded``,
``tool.failed``, ``tool.cancelled``, or ``tool.in_doubt`` resolved ``unknown``) until an
adapter records that it put it into its model's context (``tool.context_delivered``).
This is journaled, so a resume in another process knows what is still owed; it is
separate from spoken delivery (held / announced: what is owed to the caller's ears).

An adapter attaches with :meth:`OutcomeFeed.subscribe` (``owed=True``): it is called
back for every outcome still owed and for every one that lands from then on, with no
window in which one can be missed, whoever lands it (the adapter's own tool handler, a
call re-run by a resume, a late outcome of a handoff's source).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from ..errors import ToolError
from ..journal import events as ev
from .registry import ToolOutcome

if TYPE_CHECKING:
    from ..runtime.handle import Handle

__all__ = ["OutcomeCallback", "OutcomeFeed", "give", "owed"]

log = logging.getLogger("callstate.tools.feed")

OutcomeCallback = Callable[[ToolOutcome], Awaitable[Any] | None]

_LANDINGS: Final = (ev.ToolSucceeded, ev.ToolFailed, ev.ToolCancelled, ev.ToolInDoubt)
_MAX_VIA: Final = 64


def owed(session: Handle) -> list[ToolOutcome]:
    """The outcomes of ``session`` no model context has been given, in landing order."""
    state = session.state
    out = []
    for call_id in state.owed_to_model:
        call = state.calls.get(call_id)
        if call is not None and call.terminal:
            out.append(ToolOutcome.from_call(call))
    return out


def give(session: Handle, call_id: str, *, via: str = "") -> bool:
    """Record that ``call_id``'s outcome was put into a model's context.

    Returns:
        True when it was owed and is now recorded as given; False when it was not owed
        (not landed yet, or given already) or ``session`` may no longer record (the
        next owner of the session still owes it).

    Raises:
        ToolError: ``call_id`` is not a call of this session, or ``via`` is not a short
            string; the message names the value.
    """
    if not isinstance(call_id, str) or call_id not in session.state.calls:
        msg = f"call_id {call_id!r:.80} is not a tool call of session {session.id!r}"
        raise ToolError(msg)
    if not isinstance(via, str) or len(via) > _MAX_VIA:
        msg = f"via must be a string of at most {_MAX_VIA} characters, got {via!r:.80}"
        raise ToolError(msg)
    if call_id not in session.state.owed_to_model or not session.writable:
        return False
    session.record(ev.ToolContextDelivered, call_id=call_id, via=via)
    return True


class OutcomeFeed:
    """Calls back, on the event loop, with each outcome that lands on one handle.

    Callbacks run from the loop (never inside the recording that landed the outcome);
    one that raises, or returns an awaitable that fails, is logged and kept.
    """

    def __init__(self, session: Handle) -> None:
        self._session = session
        self._callbacks: list[OutcomeCallback] = []
        self._watching = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def subscribe(self, callback: OutcomeCallback, *, owed: bool = False) -> Callable[[], None]:
        """Call ``callback(outcome)`` whenever an outcome lands on the session.

        Args:
            callback: a function of a ``ToolOutcome``; an awaitable it returns is run
                as a task.
            owed: also call it back (soon, in landing order) for every outcome still
                owed to the model now, skipping any given meanwhile: subscribing and
                draining in one step, so none can be missed.

        Returns:
            A function that unsubscribes ``callback``.
        """
        if not callable(callback):
            msg = f"callback must be callable, got {callback!r:.80}"
            raise ToolError(msg)
        if not self._watching:
            self._watching = True
            self._session.watch(self._seen)
        self._callbacks.append(callback)
        if owed:
            loop = asyncio.get_running_loop()
            for call_id in list(self._session.state.owed_to_model):
                loop.call_soon(self._replay, callback, call_id)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def _seen(self, event: ev.Event) -> None:
        if type(event) not in _LANDINGS or not self._callbacks:
            return
        call_id: str = event.call_id  # type: ignore[union-attr]
        if call_id not in self._session.state.owed_to_model:
            return  # not a landing (an in-doubt call to re-run), or a repeat
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # recorded outside a loop: there is nobody to call back
            return
        loop.call_soon(self._fire, tuple(self._callbacks), call_id)

    def _replay(self, callback: OutcomeCallback, call_id: str) -> None:
        if callback in self._callbacks and call_id in self._session.state.owed_to_model:
            self._fire((callback,), call_id)

    def _fire(self, callbacks: tuple[OutcomeCallback, ...], call_id: str) -> None:
        call = self._session.state.calls.get(call_id)
        if call is None or not call.terminal:
            return
        outcome = ToolOutcome.from_call(call)
        for callback in callbacks:
            if callback not in self._callbacks:
                continue  # unsubscribed since the outcome landed
            try:
                result = callback(outcome)
            except Exception:
                log.exception("on_outcome callback failed for call %s", call_id)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("on_outcome callback failed", exc_info=task.exception())
