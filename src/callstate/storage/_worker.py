"""One dedicated thread that runs blocking jobs in order for an event loop.

Cheaper than ``loop.run_in_executor`` on a one-worker pool: a job is one queue put and
one ``call_soon_threadsafe`` back, with no ``concurrent.futures.Future`` to chain, so
the thread hands the GIL back sooner after each job (it matters to the hot path's tail
latency, which shares the GIL with this thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from functools import partial
from queue import SimpleQueue
from typing import Any, TypeVar

__all__ = ["Worker"]

_T = TypeVar("_T")
#: (job, what to call on the loop with ``(ok, value)``, the loop, the future it settles)
_Job = tuple[
    Callable[[], Any],
    Callable[..., None],
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any] | None",
]


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():  # the caller gave up waiting; nobody reads the outcome
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class Worker:
    """A daemon thread running submitted callables one at a time, in submission order."""

    def __init__(self, name: str) -> None:
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._stopped = False

    def submit(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        """Queue ``fn`` and return a future of its result, bound to the running loop.

        A job whose future was cancelled before the thread reached it is skipped.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_T] = loop.create_future()
        self._jobs.put((fn, partial(_resolve, fut), loop, fut))
        return fut

    def submit_then(self, fn: Callable[[], _T], then: Callable[[bool, Any], None]) -> None:
        """Queue ``fn``; once it ran, call ``then(True, result)`` or ``then(False,
        exception)`` on the running loop (one ``call_soon_threadsafe``, no future)."""
        self._jobs.put((fn, then, asyncio.get_running_loop(), None))

    def _main(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, then, loop, fut = job
            del job
            if fut is not None and fut.cancelled():
                continue
            try:
                outcome = (True, fn())
            except BaseException as exc:  # handed to the awaiting task, never lost here
                outcome = (False, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed while the job ran
                loop.call_soon_threadsafe(then, *outcome)
            del fn, then, loop, fut, outcome

    def stop(self) -> None:
        """Let the thread finish the queued jobs and exit (does not wait for it)."""
        if not self._stopped:
            self._stopped = True
            self._jobs.put(None)

    @property
    def alive(self) -> bool:
        """True until the thread has exited."""
        return self._thread.is_alive()
