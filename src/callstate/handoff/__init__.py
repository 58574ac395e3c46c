"""Handoff: a signed package that carries a call to another agent, exactly once.

``package`` (``HandoffPackage`` and its conversions), ``wire`` (the strict version-1
wire format and its signature), ``build`` (building and trimming a payload: pure) and
``flow`` (offer, accept, reclaim: freezing and fencing).
"""

from .package import HandoffPackage

__all__ = ["HandoffPackage"]
