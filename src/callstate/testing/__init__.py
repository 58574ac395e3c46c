"""Test helpers shipped with callstate: a fake clock, a capturing sink, the store suite."""

from __future__ import annotations

from .clock import FakeClock
from .sinks import CapturingSink

__all__ = ["CapturingSink", "FakeClock"]
