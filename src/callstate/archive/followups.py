"""Post-call follow-ups: ``keeper.on_call_complete(fn, grace=...)``.

One follow-up per archive record and callback, stored next to the archive (so it
survives restarts), due ``grace`` seconds after the call closed, cancelled when the
caller reconnects first, and claimed atomically, so of several keepers sweeping one
store exactly one runs each. A keeper killed while a callback runs leaves its claim
to lapse, after which another keeper runs it again: callbacks that must never repeat
can key on ``record.record_id``. The callbacks themselves are registered in process;
the stored payload names the record and the callback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..errors import ConfigError
from ..journal import events as ev
from ..storage.base import FollowUp
from .records import ArchiveRecord

if TYPE_CHECKING:
    from ..runtime.host import Host
    from .records import Archive

__all__ = ["FOLLOWUP_CLAIM_S", "FollowUpFn", "FollowUps"]

#: Seconds a keeper holds a claimed follow-up before another may run it.
FOLLOWUP_CLAIM_S: Final = 600.0

#: ``fn(record)`` run after a call; may return an awaitable.
FollowUpFn = Callable[[ArchiveRecord], Any]

_encoder = msgspec.json.Encoder()


class _Payload(msgspec.Struct, frozen=True, kw_only=True):
    record_id: str
    name: str
    v: int = 1


class _Callback(msgspec.Struct, frozen=True):
    fn: FollowUpFn
    grace: float


_payload_decoder = msgspec.json.Decoder(_Payload)


class FollowUps:
    """Post-call callbacks: registered in process, scheduled and claimed in the store."""

    def __init__(self, host: Host, archive: Archive) -> None:
        self._host = host
        self._archive = archive
        self.callbacks: dict[str, _Callback] = {}
        self.errors = 0

    def register(self, fn: FollowUpFn, *, grace: float, name: str | None = None) -> str:
        """Register ``fn`` under ``name`` (default: its qualified name); returns the name."""
        if not callable(fn):
            msg = f"on_call_complete needs a callable, got {type(fn).__name__}"
            raise ConfigError(msg)
        if not grace >= 0:
            msg = f"grace must be >= 0 seconds, got {grace!r}"
            raise ConfigError(msg)
        key = name or f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
        self.callbacks[key] = _Callback(fn, float(grace))
        return key

    async def schedule(self, record: ArchiveRecord) -> int:
        """Store one pending follow-up per registered callback for ``record``."""
        for name, cb in self.callbacks.items():
            await self._host.store.followup_put(
                FollowUp(
                    followup_id=f"{record.record_id}|{name}",
                    session_id=record.session_id,
                    due_at=record.timings.closed_at + cb.grace,
                    payload=_encoder.encode(_Payload(record_id=record.record_id, name=name)),
                )
            )
        return len(self.callbacks)

    async def cancel(self, session_id: str) -> int:
        """Cancel the session's pending follow-ups (the caller reconnected)."""
        count = await self._host.store.followup_cancel(session_id)
        if count:
            self._host.emit("followup.cancelled", session_id, count=count)
        return count

    async def run_due(self, now: float, *, batch: int = 20) -> int:
        """Claim and run every follow-up due at ``now``; returns how many ran."""
        host = self._host
        ran = 0
        while True:
            claimed = await host.store.followup_claim(now, host.owner, FOLLOWUP_CLAIM_S, batch)
            for f in claimed:
                ran += await self._run_one(f)
            if len(claimed) < batch:
                return ran

    async def _run_one(self, f: FollowUp) -> int:
        host = self._host
        try:
            payload = ev.decode_with(_payload_decoder, f.payload)
        except msgspec.DecodeError:  # unreadable: retire it rather than claim it forever
            self.errors += 1
            await host.store.followup_done(f.followup_id, host.owner)
            return 0
        cb = self.callbacks.get(payload.name)
        if cb is None:
            return 0  # not registered here: the claim lapses and a keeper that has it runs it
        record = await self._archive.get(payload.record_id)
        if record is None:
            await host.store.followup_done(f.followup_id, host.owner)
            return 0
        t0 = time.perf_counter()
        error: str | None = None
        try:
            result = cb.fn(record)
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:  # a failing callback is counted and reported, never retried
            self.errors += 1
            error = f"{type(exc).__name__}: {exc}"
        await host.store.followup_done(f.followup_id, host.owner)
        host.emit(
            "followup.run",
            f.session_id,
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            record_id=payload.record_id,
            name=payload.name,
            ok=error is None,
            error=error,
        )
        return 1
