"""RecoveryEvent: one typed record per recovery decision, fanned out to sinks.

Sinks are plain callables taking a ``RecoveryEvent`` (sync or async). They run on one
loop, off the call path; a sink that raises is isolated and counted, never raised into
a call. Besides sinks, any number of readers can follow the stream with
``async for ev in keeper.events()``: each gets a bounded queue of its own, and a
reader that falls behind loses its oldest events (counted), never slowing a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal, Protocol, cast

import msgspec

__all__ = [
    "ContextSink",
    "EventStream",
    "JsonlSink",
    "Measure",
    "MeasureSink",
    "Observer",
    "Percentiles",
    "RecoveryEvent",
    "RecoveryKind",
    "Sink",
    "Stats",
    "percentiles",
]

RecoveryKind = Literal[
    "interrupt.reconciled",
    "result.held",
    "result.delivered",
    "result.discarded",
    "result.announced",
    "result.compensated",
    "tool.in_doubt",
    "tool.rerun",
    "tool.deduplicated",
    "tool.cancelled",
    "tool.finished",
    "link.lost",
    "link.restored",
    "outbox.dropped",
    "session.started",
    "session.resumed",
    "session.ended",
    "session.released",
    "session.expired",
    "session.stale",
    "session.fenced",
    "handoff.offered",
    "handoff.accepted",
    "handoff.reclaimed",
    "followup.run",
    "followup.cancelled",
    "call.archived",
]

#: How many recent time-to-recover samples ``stats()`` keeps.
_LATENCY_SAMPLES: Final = 10_000


class RecoveryEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One recovery decision: what happened, to which session, and how long it took.

    ``epoch`` and ``agent`` say which owner and agent the session had when it was
    emitted (None for events about a session no live handle holds, e.g. an expiry).
    """

    kind: RecoveryKind
    session_id: str
    at: float
    call_id: str | None = None
    latency_ms: float | None = None
    data: dict[str, Any] = {}
    epoch: int | None = None
    agent: str | None = None


Sink = Callable[[RecoveryEvent], Any]


class ContextSink(Protocol):
    """A sink that needs something from the emitting call's context (e.g. the active
    trace): ``capture`` runs synchronously where the event is emitted and must be
    cheap; its result is handed to ``consume`` on the observer's loop."""

    def capture(self, event: RecoveryEvent) -> object: ...

    def consume(self, event: RecoveryEvent, captured: object) -> Any: ...


class MeasureSink(Protocol):
    """A sink that also takes measurements that are not recovery events (flush time)."""

    def measure(self, name: str, value: float) -> Any: ...


class Measure(msgspec.Struct, frozen=True):
    """One measurement queued for the sinks that take them (see ``MeasureSink``)."""

    name: str
    value: float


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """Nearest-rank percentiles of a sample, in milliseconds (None when empty)."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """What ``keeper.stats()`` reports.

    ``counts`` holds events per kind; ``sink_errors`` the calls to a sink that raised;
    ``stream_dropped`` events a slow ``keeper.events()`` reader lost;
    ``time_to_recover`` the ``session.resumed`` latencies (server-side resume time).
    """

    counts: dict[str, int] = {}
    sink_errors: int = 0
    stream_dropped: int = 0
    time_to_recover: Percentiles = Percentiles()


def percentiles(samples: list[float] | deque[float]) -> Percentiles:
    """Nearest-rank p50/p95/p99 of ``samples``."""
    if not samples:
        return Percentiles()
    ordered = sorted(samples)
    n = len(ordered)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * n) - 1)]

    return Percentiles(count=n, p50=rank(0.50), p95=rank(0.95), p99=rank(0.99))


_END: Final = object()  # closes every stream when the observer stops

#: What the observer's queue holds: an event (with what capturing sinks took at emit
#: time, keyed by ``id(sink)``) or a measurement.
_Item = tuple[RecoveryEvent | Measure, dict[int, object] | None]


class EventStream:
    """``async for ev in keeper.events()``: a bounded, per-reader queue of events.

    When the reader falls ``maxsize`` events behind, the oldest are dropped (and
    counted in ``dropped`` and in ``keeper.stats().stream_dropped``). The stream ends
    when the keeper closes, when ``aclose()`` is called, or when it is garbage
    collected after the reader stops iterating.
    """

    def __init__(self, observer: Observer, maxsize: int) -> None:
        self._observer = observer
        self._items: deque[RecoveryEvent | object] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def deliver(self, item: RecoveryEvent | object) -> None:
        """Queue ``item`` for the reader (called by the observer's loop)."""
        if self._closed:
            return
        if item is not _END and len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            self._observer.stream_dropped += 1
        self._items.append(item)
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[RecoveryEvent]:
        return self

    async def __anext__(self) -> RecoveryEvent:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if item is _END:
            self._closed = True
            raise StopAsyncIteration
        return cast(RecoveryEvent, item)  # only events and _END are ever pushed

    async def aclose(self) -> None:
        """Stop following the stream."""
        self._closed = True
        self._items.clear()
        self._ready.set()
        self._observer.forget(self)


class JsonlSink:
    """A sink appending each event as one JSON line to ``path``.

    The file is opened for each event and closed again, so the sink holds nothing
    open and several keepers may append to one file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __call__(self, event: RecoveryEvent) -> None:
        line = _encoder.encode(event) + b"\n"
        with open(self.path, "ab") as f:
            f.write(line)

    def __repr__(self) -> str:
        return f"JsonlSink({self.path!r})"


_encoder = msgspec.json.Encoder()


class Observer:
    """Queues recovery events and runs sinks and streams from one background task."""

    def __init__(self, sinks: list[Sink] | None = None, *, stream_size: int = 1000) -> None:
        self.sinks: list[Sink] = list(sinks or [])
        self.sink_errors = 0
        self.stream_dropped = 0
        self.counts: dict[str, int] = {}
        self.stream_size = stream_size
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._capturing: list[ContextSink] = []
        self._measuring = False
        self._refresh()

    def add_sink(self, sink: Sink) -> None:
        """Give every later event to ``sink`` too."""
        self.sinks.append(sink)
        self._refresh()

    def remove_sink(self, sink: Sink) -> None:
        """Stop giving events to ``sink`` (no error if it was not there)."""
        with contextlib.suppress(ValueError):
            self.sinks.remove(sink)
        self._refresh()

    def _refresh(self) -> None:
        self._capturing = [
            cast(ContextSink, s) for s in self.sinks if callable(getattr(s, "capture", None))
        ]
        self._measuring = any(callable(getattr(s, "measure", None)) for s in self.sinks)

    def emit(self, event: RecoveryEvent) -> None:
        """Count and queue ``event``; never blocks, never raises."""
        self.counts[event.kind] = self.counts.get(event.kind, 0) + 1
        if event.kind == "session.resumed" and event.latency_ms is not None:
            self._latencies.append(event.latency_ms)
        captured: dict[int, object] | None = None
        if self._capturing:
            captured = {}
            for sink in self._capturing:
                try:
                    captured[id(sink)] = sink.capture(event)
                except Exception:  # a failing sink is isolated and counted
                    self.sink_errors += 1
        self._queue.put_nowait((event, captured))

    def measure(self, name: str, value: float) -> None:
        """Queue a measurement for the sinks that take them (no-op when none do)."""
        if self._measuring:
            self._queue.put_nowait((Measure(name, value), None))

    def note(
        self,
        kind: RecoveryKind,
        session_id: str,
        *,
        at: float,
        call_id: str | None = None,
        latency_ms: float | None = None,
        data: dict[str, Any] | None = None,
        epoch: int | None = None,
        agent: str | None = None,
    ) -> None:
        """Build a ``RecoveryEvent`` and :meth:`emit` it."""
        self.emit(
            RecoveryEvent(
                kind=kind,
                session_id=session_id,
                at=at,
                call_id=call_id,
                latency_ms=latency_ms,
                data=data or {},
                epoch=epoch,
                agent=agent,
            )
        )

    def stream(self) -> EventStream:
        """A new reader of every event emitted from now on."""
        stream = EventStream(self, self.stream_size)
        self._streams.add(stream)
        return stream

    def forget(self, stream: EventStream) -> None:
        """Stop delivering to ``stream`` (it was closed)."""
        self._streams.discard(stream)

    def stats(self) -> Stats:
        """Counts by kind, sink errors, stream drops and time-to-recover percentiles."""
        return Stats(
            counts=dict(self.counts),
            sink_errors=self.sink_errors,
            stream_dropped=self.stream_dropped,
            time_to_recover=percentiles(self._latencies),
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="callstate-observer"
            )

    async def stop(self) -> None:
        if self._task is None:
            return
        await self.drain()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        for stream in list(self._streams):
            stream.deliver(_END)
        self._streams = weakref.WeakSet()

    async def drain(self) -> None:
        """Wait until every queued event has been given to every sink and stream."""
        if self._task is not None:
            await self._queue.join()

    async def _run(self) -> None:
        while True:
            item, captured = await self._queue.get()
            try:
                if isinstance(item, Measure):
                    await self._measure(item)
                    continue
                for stream in list(self._streams):
                    stream.deliver(item)
                for sink in list(self.sinks):
                    try:
                        if captured is not None and id(sink) in captured:
                            result = cast(ContextSink, sink).consume(item, captured[id(sink)])
                        else:
                            result = sink(item)
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:  # a failing sink is isolated and counted
                        self.sink_errors += 1
            finally:
                self._queue.task_done()

    async def _measure(self, item: Measure) -> None:
        for sink in list(self.sinks):
            take = getattr(sink, "measure", None)
            if not callable(take):
                continue
            try:
                result = take(item.name, item.value)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # a failing sink is isolated and counted
                self.sink_errors += 1
