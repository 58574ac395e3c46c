"""An ``append_soon`` made of a coroutine ``append``: what the SQLite store's thread does
(append, then hand the answer to ``landed``), on the loop, for test stores."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from callstate.errors import CallstateError
from callstate.storage.abilities import Landed
from callstate.storage.base import Batch


def answer_soon(
    append: Callable[[Sequence[Batch]], Awaitable[list[CallstateError | None]]],
    batches: Sequence[Batch],
    landed: Landed,
    running: set[asyncio.Task[None]],
) -> None:
    """Run ``append(batches)`` in a task kept in ``running``; give ``landed`` its answer."""

    async def run() -> None:
        try:
            results = await append(batches)
        except Exception as exc:  # handed to the flusher, as the store thread does
            landed(False, exc)
        else:
            landed(True, results)

    task = asyncio.get_running_loop().create_task(run())
    running.add(task)
    task.add_done_callback(running.discard)
