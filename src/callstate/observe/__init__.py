"""Observability: one typed ``RecoveryEvent`` per recovery decision, fanned out to sinks.

``recovery`` holds the event type, the closed set of kinds, the ``Observer`` loop that
runs sinks off the hot path, ``keeper.events()`` streams and ``keeper.stats()``.
Capabilities emit through the runtime's host; nothing here knows who emits.
"""

from .recovery import EventStream, JsonlSink, Observer, RecoveryEvent, RecoveryKind, Sink, Stats

__all__ = [
    "EventStream",
    "JsonlSink",
    "Observer",
    "RecoveryEvent",
    "RecoveryKind",
    "Sink",
    "Stats",
]
