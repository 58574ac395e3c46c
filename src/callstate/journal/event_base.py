"""What every session event has: the base struct, the format versions, shared literals.

The event families (``session_events``, ``speech_events``, ``tool_events``,
``link_events``) build on :class:`EventBase`; ``events`` joins them in one union and
holds their codec.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = ["FORMAT_VERSION", "SEALED_VERSION", "Delivery", "Effect", "EventBase", "OnInterrupt"]

FORMAT_VERSION: Final = 1
#: The version of an event holding sealed caller data (``sealed``): a reader older than
#: sealing would drop the caller silently, so it must refuse the event instead.
SEALED_VERSION: Final = 2

Effect = Literal["read", "write"]
OnInterrupt = Literal["complete", "cancel"]
Delivery = Literal["held", "delivered", "discarded", "announced", "compensated"]


class EventBase(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=False
):
    """Fields every event has: ``seq`` in the journal, wall-clock ``at``, format ``v``."""

    seq: int = 0
    at: float = 0.0
    v: int = FORMAT_VERSION
