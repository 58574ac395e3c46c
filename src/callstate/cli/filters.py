"""What ``archive list``, ``health`` and ``stats`` share: ``--since``, the caller tag,
and each record's follow-up states."""

from __future__ import annotations

import re
from collections import defaultdict

import msgspec

from ..errors import ConfigError
from ..storage import Store
from ..storage.abilities import keeps_ledger

__all__ = ["caller_tag", "followup_states", "parse_since"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str | None, *, now: float) -> float | None:
    """``--since 90s | 30m | 1h | 2d`` (or plain seconds) as the moment that long before
    ``now``; None when not given.

    Raises:
        ConfigError: ``text`` is not a duration; the message names ``--since`` and it.
    """
    if text is None:
        return None
    m = _DURATION.match(text)
    if m is None:
        msg = f"--since must be a duration like 90s, 30m, 1h or 2d, got {text!r}"
        raise ConfigError(msg)
    return now - float(m.group(1)) * _UNIT[m.group(2)]


def caller_tag(caller_hash: str | None) -> str:
    """How a list shows a caller: a short prefix of its keyed hash, never the number."""
    return "-" if caller_hash is None else caller_hash[:10]


class _Payload(msgspec.Struct):
    record_id: str = ""


async def followup_states(store: Store) -> dict[str, list[str]]:
    """Each archive record's follow-up ledger states, by record id ({} without a ledger)."""
    if not keeps_ledger(store):
        return {}
    states: dict[str, list[str]] = defaultdict(list)
    for f in await store.followup_list(limit=1_000_000):
        try:
            record_id = msgspec.json.decode(f.payload, type=_Payload).record_id
        except msgspec.DecodeError:
            continue  # an unreadable payload belongs to no record we can name
        states[record_id].append(f.state)
    return dict(states)
