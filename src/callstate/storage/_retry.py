"""Bounded reconnect-and-retry for the server stores, and the appends it leaves in doubt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ..errors import StorageError
from .base import Batch

__all__ = ["InDoubt", "Retrying"]

_T = TypeVar("_T")


class Retrying:
    """Runs store operations, retrying transient failures with backoff for ``retry_for`` s.

    Args:
        label: how errors name the store (``"redis store 'redis://…'"``).
        retry_for: seconds of retrying before ``StorageError``.
        transient: driver errors worth another attempt (connection lost, timeouts,
            server restarting, deadlocks); any other ``fatal`` driver error raises
            ``StorageError`` at once. Callstate errors pass through untouched.
        recover: awaited after a transient error, before the next attempt (e.g. to
            reload scripts a restarted server forgot); its own transient errors count
            as the attempt's.
    """

    def __init__(
        self,
        label: str,
        retry_for: float,
        transient: tuple[type[BaseException], ...],
        fatal: type[BaseException],
        recover: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> None:
        self.label = label
        self.retry_for = retry_for
        self.transient: tuple[type[BaseException], ...] = (*transient, TimeoutError)
        self.fatal = fatal
        self.recover = recover
        #: Attempts repeated after a transient failure.
        self.retries = 0

    async def run(self, what: str, op: Callable[[bool], Awaitable[_T]]) -> _T:
        """``await op(retrying)`` until it succeeds, fails for good, or time runs out.

        ``retrying`` is True from the second attempt on: an earlier attempt may have
        been applied by the server even though its reply never arrived.

        Raises:
            StorageError: a fatal driver error, or still failing after ``retry_for``
                seconds (chained to the last driver error).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay, attempt = 0.01, 0
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        while True:
            try:
                try:
                    # an attempt may not outlive the deadline (a hung server must not hang us)
                    async with asyncio.timeout(max(deadline - loop.time(), 0.05)):
                        result = await op(attempt > 0)
                    _raise_if_cancelled(task, cancels, None)
                    return result
                except self.transient as exc:
                    last: BaseException = exc
                    _raise_if_cancelled(task, cancels, exc)
                    if self.recover is not None:
                        await self.recover(exc)
            except self.transient as exc:
                last = exc
            except self.fatal as exc:
                _raise_if_cancelled(task, cancels, exc)
                msg = f"{self.label}: {what} failed: {exc}"
                raise StorageError(msg) from exc
            _raise_if_cancelled(task, cancels, last)
            now = loop.time()
            if now >= deadline:
                msg = f"{self.label}: {what} still failing after {self.retry_for:.1f}s: {last!r}"
                raise StorageError(msg) from last
            attempt += 1
            self.retries += 1
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, 0.25)


def _raise_if_cancelled(
    task: asyncio.Task[object] | None, before: int, exc: BaseException | None
) -> None:
    """Raise ``CancelledError`` if the task was cancelled during the attempt.

    A driver that is handling a socket error when the cancellation arrives can raise its
    own error instead (redis-py turns it into ``ConnectionError``), or retry on its own
    and return: either way the cancellation would be lost, and a task told to stop
    would run on.
    """
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError from exc


class InDoubt:
    """Per session, the seqs a writer may have stored without seeing the reply.

    Only there may a later batch of the same writer and epoch overlap the stored
    journal: equal bytes at equal seqs are then its own earlier write, accepted instead
    of refused or written twice. Anywhere else an overlap is a conflict.
    """

    def __init__(self) -> None:
        self._ranges: dict[str, tuple[int, int, int]] = {}  # sid -> (epoch, lo, hi)

    def range(self, batch: Batch, retrying: bool) -> tuple[int, int]:
        """``(lo, hi)`` seqs of the batch's session in doubt; ``(0, 0)`` when none."""
        lo, hi = (batch.first_seq, batch.last_seq) if retrying else (0, 0)
        known = self._ranges.get(batch.session_id)
        if known is not None and known[0] == batch.epoch:
            lo, hi = (min(lo, known[1]), max(hi, known[2])) if retrying else known[1:]
        return lo, hi

    def gave_up(self, batches: Iterable[Batch]) -> None:
        """An append failed after attempts that may have landed: keep their ranges."""
        for b in batches:
            lo, hi = self.range(b, True)
            self._ranges[b.session_id] = (b.epoch, lo, hi)

    def settled(self, batches: Iterable[Batch]) -> None:
        """An append got its answer: nothing of these sessions is in doubt any more."""
        for b in batches:
            self._ranges.pop(b.session_id, None)
