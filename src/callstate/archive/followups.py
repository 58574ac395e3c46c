"""Post-call follow-ups: ``keeper.on_call_complete(fn, grace=...)``.

Each time a leg of a call closes (a hang-up, an expiry) one follow-up per callback is
stored next to the archive (so it survives restarts), due ``grace`` seconds later
(default: the resume window). A reconnect before it is due cancels it, and the
continuation's own close schedules the next: one follow-up per quiet period. Due
follow-ups are claimed atomically, so of several keepers sweeping one store exactly
one runs each.

The callback is given a :class:`~callstate.archive.calls.CallRecord`: every leg of the
call so far and what this callback's earlier runs for it returned (stored in the
store's follow-up log), with ``idempotency_key`` (``"{call_id}:{leg}"``). A keeper
killed while a callback runs leaves its claim to lapse, after which another keeper
runs it again with the same key; once a run's result is logged it is never run again.
The callbacks themselves are registered in process; the stored payload names the
record and the callback.

Storage: the follow-up row carries the schedule and the claim (``pending``,
``claimed``, ``done``, ``cancelled``); the store's follow-up log (``FollowUpLog``)
keeps one ``FollowUpResult`` per follow-up id, insert-once. A ledger with retries can
grow on both without a new concept: more row states, and one logged result per attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..errors import CallstateError, ConfigError
from ..journal import events as ev
from ..storage.base import FollowUp, FollowUpLog, FollowUpRun
from .calls import CallRecord, FollowUpResult, assemble_call, decode_result, encode_result

if TYPE_CHECKING:
    from ..runtime.host import Host
    from .records import Archive, ArchiveRecord

__all__ = ["FOLLOWUP_CLAIM_S", "FollowUpFn", "FollowUps"]

#: Seconds a keeper holds a claimed follow-up before another may run it.
FOLLOWUP_CLAIM_S: Final = 600.0

#: Legs of one call read back for a follow-up, at most.
MAX_LEGS: Final = 10_000

#: ``fn(call)`` run after a call; may return an awaitable. What it returns (JSON data)
#: is kept and shown to its next run for the same call.
FollowUpFn = Callable[[CallRecord], Any]

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

    def register(self, fn: FollowUpFn, *, grace: float | None, name: str | None = None) -> str:
        """Register ``fn`` under ``name`` (default: its qualified name); returns the name.

        ``grace`` None means the resume window: the follow-up runs once the caller can
        no longer continue the call.
        """
        if not callable(fn):
            msg = f"on_call_complete needs a callable, got {type(fn).__name__}"
            raise ConfigError(msg)
        if grace is None:
            grace = self._host.resume_window
        if not isinstance(grace, int | float) or not grace >= 0:
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
        results = await self._results(record.session_id)
        if any(r.followup_id == f.followup_id for r in results):
            # it ran and logged its result, and the keeper died before marking it done
            await host.store.followup_done(f.followup_id, host.owner)
            return 0
        legs = await self._archive.list(session_id=record.session_id, limit=MAX_LEGS)
        call = assemble_call(
            [*legs, record], results, call_id=record.session_id, leg=record.epoch, name=payload.name
        )
        t0 = time.perf_counter()
        error: str | None = None
        value: Any = None
        try:
            value = cb.fn(call)
            if asyncio.iscoroutine(value):
                value = await value
        except Exception as exc:  # a failing callback is counted and reported, never retried
            self.errors += 1
            error = f"{type(exc).__name__}: {exc}"
            value = None
        result = FollowUpResult(
            followup_id=f.followup_id,
            call_id=call.call_id,
            name=payload.name,
            leg=call.leg,
            idempotency_key=call.idempotency_key,
            ran_at=host.clock.now(),
            ok=error is None,
            result=_jsonable(value),
            error=error,
            legs=[r.epoch for r in call.legs],
        )
        store = host.store
        if isinstance(store, FollowUpLog):  # logged before done: a re-run finds it
            await store.followup_record(
                FollowUpRun(
                    followup_id=f.followup_id,
                    session_id=call.call_id,
                    data=encode_result(result),
                )
            )
        await store.followup_done(f.followup_id, host.owner)
        host.emit(
            "followup.run",
            f.session_id,
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            record_id=payload.record_id,
            name=payload.name,
            idempotency_key=call.idempotency_key,
            legs=len(call.legs),
            ok=error is None,
            error=error,
        )
        return 1

    async def _results(self, session_id: str) -> list[FollowUpResult]:
        """The session's logged follow-up results (none on a store without a log)."""
        store = self._host.store
        if not isinstance(store, FollowUpLog):
            return []
        out: list[FollowUpResult] = []
        for run in await store.followup_runs(session_id):
            try:
                out.append(decode_result(run.data))
            except CallstateError:  # unreadable (or newer): counted, not shown
                self.errors += 1
        return out


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data, or its ``str`` when it is not JSON-able."""
    if value is None:
        return None
    try:
        data = msgspec.to_builtins(value)
        _encoder.encode(data)
    except (TypeError, ValueError, msgspec.EncodeError):
        return str(value)
    return data
