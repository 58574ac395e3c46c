"""One frame event handler per processor hook, calling the handler for a frame's class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipecat.frames.frames import Frame

from ...errors import SessionClosed, StaleEpochError

__all__ = ["Handler", "dispatch"]

Handler = Callable[[Any], None]


def dispatch(
    table: Sequence[tuple[type[Frame], Handler]], live: Callable[[], bool]
) -> Callable[[object, Frame], None]:
    """An event handler calling the handler for a frame's class, found once per class.

    Event handlers run for every frame that passes a processor (audio included), so
    each costs one dict lookup for the frames it does not care about. It is a plain
    function: Pipecat inspects every handler it calls, and a function is quickest.
    Once ``live()`` is false (the session was fenced: another owner has the call) it
    records nothing more and the frame goes on untouched. Other errors reach Pipecat,
    which logs them.
    """
    cache: dict[type, Handler | None] = {}

    def handle(_processor: object, frame: Frame) -> None:
        cls = type(frame)
        try:
            handler = cache[cls]
        except KeyError:
            handler = cache[cls] = next((h for t, h in table if issubclass(cls, t)), None)
        if handler is not None and live():
            try:
                handler(frame)
            except SessionClosed:
                return  # handed over or closed: this pipeline has nothing more to record
            except StaleEpochError:
                live()  # fenced meanwhile: say so once, then stop recording
                return

    return handle
