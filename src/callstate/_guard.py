"""The tool-call guard: write-ahead intent, recorded outcomes, barge-in and crash handling.

Every tool call runs through :func:`run_tool`:

1. ``ToolRequested`` (the tool's policy, the generation that asked, the turn) and
   ``ToolStarted`` (idempotency key, attempt) are recorded and flushed: the intent is
   durable **before** the function starts, so a crash inside it leaves the call
   ``started`` (in doubt), never absent.
2. The function runs in its own task (so a barge-in or the end of the session can
   cancel it, and so a caller cancelled by its framework does not take a write down
   with it), under ``timeout_s``.
3. The terminal event is recorded on the handle that started the call, even after a
   barge-in (then its spoken delivery is held). When that handle may no longer record,
   the outcome is passed on: a session offered to another agent stores it for its next
   owner (``_handoff_flow.hand_over``); a session taken over in this process gets it on
   its live handle (:func:`land_late`), or once a handle is adopted here
   (:func:`land_parked`). A write's outcome is flushed before it is returned: the agent
   speaks about it next.

A call's task lives in ``Keeper._tool_runs`` keyed by (session id, call id) until its
outcome has landed; a repeated call id awaits it instead of running the tool twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from . import events as ev
from .errors import (
    CallstateError,
    SessionClosed,
    SessionFrozen,
    StaleEpochError,
    ToolArgumentsError,
    ToolError,
    UnknownTool,
)
from .observe import RecoveryKind
from .reconcile import held_decisions, must_not_run
from .state import SessionState, ToolCall
from .tools import (
    DEFAULT_MAX_RESULT_BYTES,
    ToolContext,
    ToolOutcome,
    ToolSpec,
    encode_payload,
    idempotency_key,
)

if TYPE_CHECKING:
    from .keeper import Keeper
    from .session import Session

__all__ = [
    "cancel_call",
    "land_late",
    "land_parked",
    "launch",
    "reconcile_held",
    "record_progress",
    "run_tool",
]

_DECISION_KIND: Final[dict[str, RecoveryKind]] = {
    "delivered": "result.delivered",
    "discarded": "result.discarded",
    "announced": "result.announced",
}

_MAX_CALL_ID: Final = 256


@dataclass(slots=True)
class _Run:
    """A tool function running in this process."""

    session: Session  # the handle that started it
    spec: ToolSpec
    task: asyncio.Task[ToolOutcome]
    cancel_reason: str | None = None  # why the guard cancelled it, if it did


@dataclass(frozen=True, slots=True)
class _Terminal:
    status: str  # succeeded | failed | cancelled | unknown
    result: Any = None
    error: str | None = None
    error_type: str = ""


def _limit(keeper: Keeper) -> int:
    return keeper.tools.max_result_bytes if keeper.tools is not None else DEFAULT_MAX_RESULT_BYTES


def _generation(state: SessionState) -> str | None:
    """The utterance of the agent response under way: the current one, or the latest
    assistant utterance since the caller last spoke."""
    if state.current_utterance is not None:
        return state.current_utterance
    for item in reversed(state.items):
        if item.kind == "user":
            return None
        if item.kind == "assistant":
            return item.id
    return None


def _outcome(call: ToolCall, *, deduplicated: bool = False) -> ToolOutcome:
    return ToolOutcome.from_call(call, deduplicated=deduplicated)


def _writable(session: Session) -> bool:
    try:
        session._check_writable()
    except CallstateError:
        return False
    return True


# -- running a call -------------------------------------------------------------------


async def run_tool(
    session: Session,
    name: str,
    args: dict[str, Any] | None = None,
    *,
    call_id: str | None = None,
    utterance_id: str | None = None,
    compensates: str | None = None,
) -> ToolOutcome:
    """Run one tool call through the guard; see ``Session.run_tool``."""
    session._check_writable()
    if session.state.status in ("ended", "expired"):
        msg = f"session {session.id!r} has {session.state.status}; no new tool call can start"
        raise SessionClosed(msg, session_id=session.id)
    keeper = session.keeper
    if call_id is None:
        call_id = f"call_{uuid.uuid4().hex[:16]}"
    if not isinstance(call_id, str) or not call_id or len(call_id) > _MAX_CALL_ID:
        msg = f"call_id must be a non-empty string of at most {_MAX_CALL_ID} characters, got {call_id!r}"
        raise ToolArgumentsError(msg)
    existing = session.state.calls.get(call_id)
    if existing is not None:
        return await _dedupe(session, existing, name)
    if not isinstance(name, str) or not name:
        msg = f"tool name must be a non-empty string, got {name!r}"
        raise ToolArgumentsError(msg)
    args = {} if args is None else args
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        msg = f"call {call_id!r}: args must be a dict with str keys, got {args!r:.200}"
        raise ToolArgumentsError(msg)
    clean = encode_payload(args, what=f"args of call {call_id!r}", limit=_limit(keeper))
    spec = keeper.tools.get(name) if keeper.tools is not None and name in keeper.tools else None
    state = session.state
    session._record(
        ev.ToolRequested,
        call_id=call_id,
        name=name,
        args=clean,
        effect=spec.effect if spec else "read",
        idempotent=spec.idempotent if spec else False,
        on_interrupt=spec.on_interrupt if spec else "complete",
        compensate=spec.compensate if spec else None,
        timeout_s=spec.timeout_s if spec else None,
        utterance_id=utterance_id if utterance_id is not None else _generation(state),
        turn=state.turn,
        compensates=compensates,
    )
    call = state.calls[call_id]
    # a model error (a tool that does not exist, arguments that do not fit) is an
    # outcome the model must see, so it is recorded as a failure, not raised
    problem: ToolError | None = None
    if spec is None:
        known = sorted(keeper.tools.names()) if keeper.tools is not None else []
        problem = UnknownTool(f"no tool named {name!r} is registered (known: {known})")
    else:
        try:
            spec.check_args(clean)
        except ToolArgumentsError as exc:
            problem = exc
    if problem is not None or spec is None:
        session._record(
            ev.ToolFailed, call_id=call_id, error=str(problem), error_type=type(problem).__name__
        )
        return _outcome(call)
    if must_not_run(call, state):
        cancel_call(session, call, "generation interrupted")
        return _outcome(call)
    return await _await(launch(session, spec, call, attempt=1))


async def _dedupe(session: Session, call: ToolCall, name: str) -> ToolOutcome:
    if call.name != name:
        msg = f"call id {call.call_id!r} was already used for tool {call.name!r}, not {name!r}"
        raise ToolArgumentsError(msg)
    keeper = session.keeper
    keeper._emit("tool.deduplicated", session.id, call_id=call.call_id, status=call.status)
    run = keeper._tool_runs.get((session.id, call.call_id))
    if run is not None and not call.terminal:
        outcome = await asyncio.shield(run.task)
        return msgspec.structs.replace(outcome, deduplicated=True)
    return _outcome(call, deduplicated=True)


def cancel_call(session: Session, call: ToolCall, reason: str) -> None:
    session._record(ev.ToolCancelled, call_id=call.call_id, reason=reason)
    session.keeper._emit("tool.cancelled", session.id, call_id=call.call_id, reason=reason)


def launch(session: Session, spec: ToolSpec, call: ToolCall, *, attempt: int) -> _Run:
    """Record the start and start the call's task (which first makes the start durable).

    The run is registered at once, so a repeated call id awaits it from this moment.
    """
    keeper = session.keeper
    key = call.idempotency_key or idempotency_key(session.id, call.call_id)
    session._record(ev.ToolStarted, call_id=call.call_id, attempt=attempt, idempotency_key=key)
    compensated = session.state.calls.get(call.compensates) if call.compensates else None
    ctx = ToolContext(
        session,
        call,
        limit=_limit(keeper),
        compensates=_outcome(compensated) if compensated is not None else None,
    )
    run_key = (session.id, call.call_id)
    started_seq = session.state.seq
    task = asyncio.get_running_loop().create_task(
        _execute(session, spec, ctx, run_key, started_seq), name=f"callstate-tool-{spec.name}"
    )
    task.add_done_callback(_retrieve)
    run = _Run(session=session, spec=spec, task=task)
    keeper._tool_runs[run_key] = run
    return run


def _retrieve(task: asyncio.Task[ToolOutcome]) -> None:
    # an error also reaches whoever awaits the run; this keeps an unawaited re-run quiet
    if not task.cancelled():
        task.exception()


async def _await(run: _Run) -> ToolOutcome:
    if run.spec.on_interrupt == "complete":
        # the tool finishes (and records) even if whoever awaits it is cancelled
        return await asyncio.shield(run.task)
    return await run.task


async def _execute(
    session: Session,
    spec: ToolSpec,
    ctx: ToolContext,
    run_key: tuple[str, str],
    started_seq: int,
) -> ToolOutcome:
    keeper = session.keeper
    call = session.state.calls[ctx.call_id]
    try:
        try:
            await session.flush()  # write-ahead: durable before the function runs
        except asyncio.CancelledError:
            run = keeper._tool_runs.get(run_key)
            reason = run.cancel_reason if run is not None else None
            _uncancel()
            why = {"closed": "the session was closed"}.get(reason or "", reason or "cancelled")
            with contextlib.suppress(CallstateError):
                cancel_call(session, call, f"{why} before the tool started")
            return _outcome(call)
        except SessionFrozen:
            # offered to another agent meanwhile: the offer made the start durable with
            # it, so the call runs and its outcome is handed to the next owner
            if session.durable_seq < started_seq:
                raise
        except CallstateError as exc:
            with contextlib.suppress(CallstateError):
                cancel_call(session, call, f"intent not durable: {exc}")
            raise
        if call.terminal:  # ended while its intent was being flushed
            return _outcome(call)
        end = await _call(session, spec, ctx, run_key)
        return await _land(session, ctx.call_id, end)
    finally:
        keeper._tool_runs.pop(run_key, None)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # the cancellation is handled: the outcome is recorded


async def _call(
    session: Session, spec: ToolSpec, ctx: ToolContext, run_key: tuple[str, str]
) -> _Terminal:
    """Run the function once and say how it ended (never raises but for ``closed``)."""
    keeper = session.keeper
    kwargs = dict(session.state.calls[ctx.call_id].args)
    if spec.wants_ctx:
        kwargs["ctx"] = ctx
    timer = asyncio.timeout(spec.timeout_s)
    try:
        async with timer:
            value = await spec.fn(**kwargs)
    except asyncio.CancelledError:
        run = keeper._tool_runs.get(run_key)
        reason = (run.cancel_reason if run is not None else None) or "cancelled"
        if reason == "closed":
            raise  # the process lets go of the session: the call stays in doubt
        _uncancel()
        if spec.effect == "write":  # cut off mid-flight: it may or may not have happened
            return _Terminal("unknown", error=f"write cut off mid-flight ({reason})")
        return _Terminal("cancelled", error=reason)
    except Exception as exc:
        if isinstance(exc, TimeoutError) and timer.expired():
            error = f"tool {spec.name!r} timed out after {spec.timeout_s:g}s"
            return _Terminal("failed", error=error, error_type="TimeoutError")
        return _Terminal(
            "failed", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__
        )
    return _succeeded(spec, ctx.call_id, value, _limit(keeper))


def _succeeded(spec: ToolSpec, call_id: str, value: Any, limit: int) -> _Terminal:
    what = f"result of tool {spec.name!r} (call {call_id!r})"
    try:
        result = encode_payload(value, what=what, limit=limit)
    except CallstateError as exc:
        # the tool ran; only its result cannot be stored. Say so: a write did happen.
        error = f"the tool ran to completion but its result cannot be recorded: {exc}"
        return _Terminal("failed", error=error, error_type=type(exc).__name__)
    return _Terminal("succeeded", result=result)


def _terminal_event(call_id: str, end: _Terminal) -> tuple[type[ev.Event], dict[str, Any]]:
    if end.status == "succeeded":
        return ev.ToolSucceeded, {"call_id": call_id, "result": end.result}
    if end.status == "failed":
        fields = {"call_id": call_id, "error": end.error or "", "error_type": end.error_type}
        return ev.ToolFailed, fields
    if end.status == "cancelled":
        return ev.ToolCancelled, {"call_id": call_id, "reason": end.error or "cancelled"}
    return ev.ToolInDoubt, {"call_id": call_id, "resolution": "unknown"}


def _record_terminal(session: Session, call: ToolCall, end: _Terminal) -> None:
    cls, fields = _terminal_event(call.call_id, end)
    session._record(cls, **fields)
    if end.status == "cancelled":
        session.keeper._emit("tool.cancelled", session.id, call_id=call.call_id, reason=end.error)
    elif end.status == "unknown":
        session.keeper._emit(
            "tool.in_doubt", session.id, call_id=call.call_id, resolution="unknown"
        )


async def _land(session: Session, call_id: str, end: _Terminal) -> ToolOutcome:
    """Record a call's outcome on ``session``, or hand it to the keeper if it can't."""
    call = session.state.calls[call_id]
    if call.terminal:  # the session's end already settled it
        return _outcome(call)
    if not _writable(session):
        return await _hand_over(session, call, end)
    _record_terminal(session, call, end)
    _after_terminal(
        session, call, held_reason="landed after a barge-in" if call.overtaken else None
    )
    if call.effect == "write":
        try:
            await session.flush()  # the agent speaks about a write next: make it durable
        except CallstateError:
            if session._error is not None:  # fenced: the recorded event was dropped
                return await _hand_over(session, call, end)
            # the store is down: the outcome stays queued and is written when it is back
    return _outcome(call)


async def _hand_over(session: Session, call: ToolCall, end: _Terminal) -> ToolOutcome:
    """Pass an outcome on when its own handle may no longer record it.

    A session offered to another agent stores it for whoever owns the session next
    (``_handoff_flow.hand_over``); otherwise it lands on the session's
    live handle in this keeper, or waits parked for one (:func:`land_late`).
    """
    keeper = session.keeper
    outcome = ToolOutcome(
        call_id=call.call_id,
        name=call.name,
        status=end.status,  # type: ignore[arg-type]
        result=end.result,
        error=end.error,
        error_type=end.error_type,
        overtaken=call.overtaken,
        effect=call.effect,
        attempt=call.attempts,
    )
    cls, fields = _terminal_event(call.call_id, end)
    event = cls(at=keeper.clock.now(), **fields)
    stored = False
    if session.state.pending_handoff is not None and isinstance(
        event, ev.ToolSucceeded | ev.ToolFailed | ev.ToolCancelled
    ):
        from ._handoff_flow import hand_over  # the handoff path imports much of the package

        try:
            stored = await hand_over(keeper, session, event)
        except CallstateError:  # the store is failing: keep it in this process
            stored = False
    if not stored:
        land_late(keeper, session.id, outcome)
    return outcome


def _after_terminal(session: Session, call: ToolCall, *, held_reason: str | None) -> None:
    """Hold the spoken delivery of a result that must wait, and finish compensations."""
    keeper = session.keeper
    if held_reason is not None and call.status != "cancelled":
        session._record(ev.ToolDelivery, call_id=call.call_id, decision="held", reason=held_reason)
        keeper._emit("result.held", session.id, call_id=call.call_id, reason=held_reason)
        reconcile_held(session)
    if call.compensates is not None and call.status == "succeeded":
        original = session.state.calls.get(call.compensates)
        if original is not None and original.delivery != "compensated":
            reason = f"undone by call {call.call_id!r} ({call.name})"
            session._record(
                ev.ToolDelivery, call_id=original.call_id, decision="compensated", reason=reason
            )
            keeper._emit(
                "result.compensated", session.id, call_id=original.call_id, undone_by=call.call_id
            )


def land_late(keeper: Keeper, session_id: str, outcome: ToolOutcome) -> bool:
    """Record an outcome whose own handle could not, on the session's live handle.

    Returns True when it landed; otherwise it stays parked in ``keeper._late_results``
    until a handle of the session is adopted here (:func:`land_parked`).
    """
    keeper._late_results.setdefault(session_id, {})[outcome.call_id] = outcome
    live = keeper._live.get(session_id)
    if live is None or not _writable(live):
        return False
    return outcome.call_id in land_parked(live)


def land_parked(session: Session) -> list[str]:
    """Record parked late outcomes of ``session``'s calls; returns the call ids landed."""
    parked = session.keeper._late_results.get(session.id)
    landed: list[str] = []
    if not parked or not _writable(session):
        return landed
    for call_id, outcome in list(parked.items()):
        call = session.state.calls.get(call_id)
        if call is None:
            continue  # not in this handle's history yet: keep it parked
        del parked[call_id]
        if call.terminal:
            continue
        end = _Terminal(outcome.status, outcome.result, outcome.error, outcome.error_type)
        _record_terminal(session, call, end)
        # the caller on this handle has not heard it: its delivery is owed here
        _after_terminal(session, call, held_reason="landed after the session changed owner")
        landed.append(call_id)
    if not parked:
        session.keeper._late_results.pop(session.id, None)
    return landed


async def record_progress(session: Session, call_id: str, data: dict[str, Any]) -> None:
    """Record a checkpoint durably; skipped quietly once the handle may not record."""
    if not _writable(session):
        return
    session._record(ev.ToolProgress, call_id=call_id, data=data)
    with contextlib.suppress(StaleEpochError):
        await session.flush()


def reconcile_held(session: Session) -> None:
    """Decide held results whose caller has finished a turn since the barge-in."""
    keeper = session.keeper
    rule = keeper.tools.supersedes if keeper.tools is not None else None
    decisions = held_decisions(session.state, supersedes=rule)
    if not decisions:
        return
    now = keeper.clock.now()
    first = now
    for d in decisions:
        call = session.state.calls[d.call_id]
        held_since = call.finished_at if call.finished_at is not None else now
        session._record(ev.ToolDelivery, call_id=d.call_id, decision=d.decision, reason=d.reason)
        keeper._emit(
            _DECISION_KIND[d.decision],
            session.id,
            call_id=d.call_id,
            latency_ms=max(0.0, now - held_since) * 1000,
            reason=d.reason,
        )
        first = min(first, call.overtaken_at if call.overtaken_at is not None else held_since)
    keeper._emit(
        "interrupt.reconciled",
        session.id,
        latency_ms=max(0.0, now - first) * 1000,
        decisions={d.call_id: d.decision for d in decisions},
    )
