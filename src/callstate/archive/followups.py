"""Post-call follow-ups: ``keeper.on_call_complete(fn, grace=...)``.

Each time a leg of a call closes (a hang-up, an expiry) one follow-up per callback is
stored next to the archive (so it survives restarts), due ``grace`` seconds later
(default: the resume window). A reconnect before it is due cancels it, and the
continuation's own close schedules the next: one follow-up per quiet period. Due
follow-ups are claimed atomically, so of several keepers sweeping one store exactly
one runs each.

The callback is given a :class:`~callstate.archive.calls.CallRecord`: every leg of the
call so far and what this callback's earlier runs for it returned (stored in the
store's follow-up log), with ``idempotency_key`` (``"{call_id}:{leg}"``) and
``attempt``. Each follow-up is a ledger entry: ``pending → running → succeeded``, or on
a raise ``failed → retrying`` (with backoff) ``… → dead``, with its attempt count and
last error. A keeper killed while a callback runs leaves its claim to lapse, after
which another keeper runs it again with the same key and the next ``attempt``; once a
run's result is logged it is never run again. The callbacks themselves are registered
in process; the stored payload names the record and the callback, and one whose name
this keeper does not know is marked ``orphaned`` with the reason (a keeper that knows
the name still takes it when it is next due). Every transition emits ``followup.run``
with its ``state``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..errors import CallstateError, ConfigError, PayloadTooDeep, PayloadTooLarge
from ..journal import events as ev
from ..journal.limits import Limits, check_value
from ..storage.abilities import keeps_ledger, keeps_log
from ..storage.base import FollowUp, FollowUpRun
from .calls import CallRecord, FollowUpResult, assemble_call, decode_result, encode_result

if TYPE_CHECKING:
    from ..runtime.host import Host
    from .records import Archive, ArchiveRecord

__all__ = ["FOLLOWUP_CLAIM_S", "FollowUpFn", "FollowUps", "retry_delay"]

#: Seconds a keeper holds a claimed follow-up before another may run it.
FOLLOWUP_CLAIM_S: Final = 600.0

#: Retries of a failing callback, by default (after its first start).
DEFAULT_RETRIES: Final = 3

#: Seconds before the first retry, by default; each next one waits twice as long.
DEFAULT_BACKOFF_S: Final = 30.0

#: The longest wait between two starts.
MAX_BACKOFF_S: Final = 3600.0

#: Legs of one call read back for a follow-up, at most.
MAX_LEGS: Final = 10_000

#: ``fn(call)`` run after a call; may return an awaitable. What it returns (JSON data)
#: is kept and shown to its next run for the same call.
FollowUpFn = Callable[[CallRecord], Any]

_encoder = msgspec.json.Encoder()
#: what a follow-up result may be to be stored as JSON (the defaults a session records under)
_RESULT_LIMITS: Final = Limits()


class _Payload(msgspec.Struct, frozen=True, kw_only=True):
    record_id: str
    name: str
    v: int = 1


class _Callback(msgspec.Struct, frozen=True):
    fn: FollowUpFn
    grace: float
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF_S


_payload_decoder = msgspec.json.Decoder(_Payload)


class FollowUps:
    """Post-call callbacks: registered in process, scheduled and claimed in the store."""

    def __init__(self, host: Host, archive: Archive) -> None:
        self._host = host
        self._archive = archive
        self.callbacks: dict[str, _Callback] = {}
        self.errors = 0

    def register(
        self,
        fn: FollowUpFn,
        *,
        grace: float | None,
        name: str | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
    ) -> str:
        """Register ``fn`` under ``name`` (default: its qualified name); returns the name.

        ``grace`` None means the resume window: the follow-up runs once the caller can
        no longer continue the call. A start that raises is retried ``retries`` times,
        ``backoff`` seconds after the first failure and twice as long after each next;
        then the follow-up is dead (``callstate followups retry ID`` revives it).
        """
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            msg = f"retries must be an int >= 0, got {retries!r}"
            raise ConfigError(msg)
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not backoff > 0:
            msg = f"backoff must be > 0 seconds, got {backoff!r}"
            raise ConfigError(msg)
        if not callable(fn):
            msg = f"on_call_complete needs a callable, got {type(fn).__name__}"
            raise ConfigError(msg)
        if grace is None:
            grace = self._host.resume_window
        if not isinstance(grace, int | float) or not grace >= 0:
            msg = f"grace must be >= 0 seconds, got {grace!r}"
            raise ConfigError(msg)
        key = name or f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
        self.callbacks[key] = _Callback(fn, float(grace), retries, float(backoff))
        return key

    async def schedule(self, record: ArchiveRecord, *, missing: bool = False) -> int:
        """Store one pending follow-up per registered callback for ``record``; returns
        how many. With ``missing``, only those the store has no entry for (the close
        that archived ``record`` died before scheduling them): one already stored, run,
        retrying or cancelled is left as it is."""
        store = self._host.store
        count = 0
        for name, cb in self.callbacks.items():
            followup_id = f"{record.record_id}|{name}"
            if missing and (
                not keeps_ledger(store)  # cannot tell: leave it
                or await store.followup_get(followup_id) is not None
            ):
                continue
            await store.followup_put(
                FollowUp(
                    followup_id=followup_id,
                    session_id=record.session_id,
                    due_at=record.timings.closed_at + cb.grace,
                    payload=_encoder.encode(_Payload(record_id=record.record_id, name=name)),
                )
            )
            count += 1
        return count

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
            await self._end(f, "dead", "the stored follow-up payload is unreadable")
            return 0
        cb = self.callbacks.get(payload.name)
        if cb is None:
            await self._orphaned(f, payload.name)
            return 0
        record = await self._archive.get(payload.record_id)
        if record is None:
            await self._end(f, "dead", f"archive record {payload.record_id!r} not found")
            return 0
        results = await self._results(record.session_id)
        if any(r.followup_id == f.followup_id and r.ok for r in results):
            # it ran and logged its result, and the keeper died before marking it done
            await self._end(f, "succeeded", None)
            return 0
        store = host.store
        attempt = 1
        if keeps_ledger(store):
            attempt = await store.followup_start(f.followup_id, host.owner, host.clock.now())
            if attempt == 0:
                return 0  # the claim lapsed and another keeper holds it now
        tags: dict[str, Any] = {
            "record_id": payload.record_id,
            "name": payload.name,
            "attempt": attempt,
        }
        host.emit("followup.run", f.session_id, state="running", **tags)
        legs = await self._archive.list(session_id=record.session_id, limit=MAX_LEGS)
        call = assemble_call(
            [*legs, record], results, call_id=record.session_id, leg=record.epoch, name=payload.name
        )
        call = msgspec.structs.replace(call, attempt=attempt)
        t0 = time.perf_counter()
        error: str | None = None
        value: Any = None
        try:
            value = cb.fn(call)
            if asyncio.iscoroutine(value):
                value = await value
        except Exception as exc:  # a failing callback is counted, reported and retried
            self.errors += 1
            error = f"{type(exc).__name__}: {exc}"
            value = None
        latency_ms = (time.perf_counter() - t0) * 1000.0
        if error is not None:
            host.emit("followup.run", f.session_id, state="failed", error=error, **tags)
            delay = retry_delay(attempt, retries=cb.retries, backoff=cb.backoff)
            if delay is not None and keeps_ledger(store):
                now = host.clock.now()
                await store.followup_settle(
                    f.followup_id,
                    host.owner,
                    mark="retrying",
                    error=error,
                    now=now,
                    retry_at=now + delay,
                )
                host.emit(
                    "followup.run",
                    f.session_id,
                    latency_ms=latency_ms,
                    state="retrying",
                    retry_at=now + delay,
                    ok=False,
                    error=error,
                    **tags,
                )
                return 1
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
        if keeps_log(store):  # logged before done: a re-run finds it
            # a dead run is logged per attempt, so one revived later can still log success
            key = f.followup_id if error is None else f"{f.followup_id}#{attempt}"
            await store.followup_record(
                FollowUpRun(
                    followup_id=key,
                    session_id=call.call_id,
                    data=encode_result(result),
                )
            )
        state = "succeeded" if error is None else "dead"
        await self._end(f, state, error)
        host.emit(
            "followup.run",
            f.session_id,
            latency_ms=latency_ms,
            state=state,
            idempotency_key=call.idempotency_key,
            legs=len(call.legs),
            ok=error is None,
            error=error,
            **tags,
        )
        return 1

    async def _end(self, f: FollowUp, mark: str, error: str | None) -> None:
        """Retire a claimed follow-up as ``mark`` (succeeded or dead)."""
        host, store = self._host, self._host.store
        if keeps_ledger(store):
            now = host.clock.now()
            await store.followup_settle(f.followup_id, host.owner, mark=mark, error=error, now=now)
        else:
            await store.followup_done(f.followup_id, host.owner)

    async def _orphaned(self, f: FollowUp, name: str) -> None:
        """Mark a follow-up whose callback no keeper here knows: it shows as orphaned, and
        a keeper that registered the name takes it when it is next due."""
        host, store = self._host, self._host.store
        if not keeps_ledger(store):
            return  # the claim lapses and a keeper that has it runs it
        error = (
            f"no callback named {name!r} is registered in keeper {host.owner!r}: "
            f"register it with on_call_complete(fn, name={name!r})"
        )
        now = host.clock.now()
        retry_at = now + FOLLOWUP_CLAIM_S
        await store.followup_settle(
            f.followup_id, host.owner, mark="orphaned", error=error, now=now, retry_at=retry_at
        )
        host.emit("followup.run", f.session_id, state="orphaned", name=name, error=error)

    async def _results(self, session_id: str) -> list[FollowUpResult]:
        """The session's logged follow-up results (none on a store without a log)."""
        store = self._host.store
        if not keeps_log(store):
            return []
        out: list[FollowUpResult] = []
        for run in await store.followup_runs(session_id):
            try:
                out.append(decode_result(run.data))
            except CallstateError:  # unreadable (or newer): counted, not shown
                self.errors += 1
        return out


def retry_delay(attempt: int, *, retries: int, backoff: float) -> float | None:
    """Seconds until the next start after failed start number ``attempt``, or None when
    it was the last allowed (``retries`` retries after the first). Pure: the delay
    doubles from ``backoff`` and is capped at ``MAX_BACKOFF_S``."""
    if attempt > retries:
        return None
    return min(backoff * 2.0 ** min(attempt - 1, 60), MAX_BACKOFF_S)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data: its ``str`` when it is not JSON-able, and a note naming
    the limit when it is too deep (or contains itself) or too large to store."""
    if value is None:
        return None
    try:
        check_value(value, field="follow-up result", limits=_RESULT_LIMITS)
        data = msgspec.to_builtins(value)
        _encoder.encode(data)
    except (PayloadTooDeep, PayloadTooLarge) as exc:
        return f"<not stored: {exc}>"
    except (TypeError, ValueError, msgspec.EncodeError):
        try:
            return str(value)
        except Exception:  # a broken __str__ must not fail a follow-up that succeeded
            return f"<not stored: a {type(value).__name__} that is not JSON>"
    return data
