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
   barge-in (then its spoken delivery is held); when that handle may no longer record,
   the outcome is passed on (see ``late``). A write's outcome is flushed before it is
   returned: the agent speaks about it next. A read's rides the next commit.

A call's task lives in ``ToolRuns.running`` keyed by (session id, call id) until its
outcome has landed; a repeated call id awaits it instead of running the tool twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..errors import (
    CallstateError,
    SessionClosed,
    SessionFrozen,
    ToolArgumentsError,
    ToolError,
    UnknownTool,
)
from ..journal import events as ev
from ..journal.limits import Limits, check_value
from ..journal.state import SessionState, ToolCall
from .intent import dedupes, first_of, repeat
from .late import hand_over
from .outcomes import Terminal, after_terminal, cancel_call, outcome, record_terminal
from .reconcile import must_not_run
from .registry import ToolContext, ToolOutcome, ToolSpec, encode_payload, idempotency_key
from .runs import Run, ToolRuns

if TYPE_CHECKING:
    from ..runtime.handle import Handle

__all__ = ["launch", "run_tool"]

_MAX_CALL_ID: Final = 256


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


# -- running a call -------------------------------------------------------------------


async def run_tool(
    tools: ToolRuns,
    session: Handle,
    name: str,
    args: dict[str, Any] | str | bytes | None = None,
    *,
    call_id: str | None = None,
    utterance_id: str | None = None,
    compensates: str | None = None,
    offered: Collection[str] | None = None,
) -> ToolOutcome:
    """Run one tool call through the guard; see ``Session.run_tool``."""
    session.check_writable()
    if session.state.status in ("ended", "expired"):
        msg = f"session {session.id!r} has {session.state.status}; no new tool call can start"
        raise SessionClosed(msg, session_id=session.id)
    if call_id is None:
        call_id = f"call_{uuid.uuid4().hex[:16]}"
    if not isinstance(call_id, str) or not call_id or len(call_id) > _MAX_CALL_ID:
        msg = f"call_id must be a non-empty string of at most {_MAX_CALL_ID} characters, got {call_id!r}"
        raise ToolArgumentsError(msg)
    if not isinstance(name, str) or not name:
        msg = f"tool name must be a non-empty string, got {name!r}"
        raise ToolArgumentsError(msg)
    args, malformed = _object(args)
    if malformed is not None:
        malformed = f"tool {name!r}: {malformed}"
    if not all(isinstance(k, str) for k in args):
        msg = f"call {call_id!r}: args must be a dict with str keys, got {args!r:.200}"
        raise ToolArgumentsError(msg)
    clean = encode_payload(args, what=f"args of call {call_id!r}", limit=tools.max_result_bytes)
    wire_id: str | None = None
    if call_id in session.state.calls:
        latest = _latest(session.state, call_id)
        same = latest.error == malformed if malformed is not None else latest.args == clean
        if latest.name == name and same:
            return await _dedupe(tools, session, latest)
        # the id was used for another call: this is a new one, journaled as ``id#n``
        wire_id, call_id = call_id, _fresh(session.state, call_id)
    spec = tools.spec(name)
    state = session.state
    request: dict[str, Any] = dict(
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
        wire_id=wire_id,
    )
    if offered is not None and name not in offered:
        spec = None  # the model was not offered it: it must not run
    if (
        spec is not None
        and malformed is None
        and compensates is None
        and dedupes(spec, tools.dedupe_intent)
    ):
        first = first_of(state, name, clean)
        if first is not None:  # the same write asked for again this turn: it runs once
            return await repeat(tools, session, first, request)
    session.record(ev.ToolRequested, **request)
    call = state.calls[call_id]
    # a model error (a tool that does not exist, arguments that do not fit) is an
    # outcome the model must see, so it is recorded as a failure, not raised
    problem: ToolError | None = None
    if malformed is not None:
        problem = ToolArgumentsError(malformed)
    elif spec is None:
        known = sorted(offered if offered is not None else tools.names())
        problem = UnknownTool(f"no tool named {name!r} is registered (known: {known})")
    else:
        try:
            spec.check_args(clean)
        except ToolArgumentsError as exc:
            problem = exc
    if problem is not None or spec is None:
        session.record(
            ev.ToolFailed, call_id=call_id, error=str(problem), error_type=type(problem).__name__
        )
        return outcome(call)
    if must_not_run(call, state):
        cancel_call(session, call, "generation interrupted")
        return outcome(call)
    return await _await(launch(tools, session, spec, call, attempt=1))


_JSON_KINDS: Final = {
    type(None): "null",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _object(args: object) -> tuple[dict[str, Any], str | None]:
    """The arguments as a dict, and why they are not a JSON object (None when they are).

    ``None`` means no arguments; a ``str``/``bytes`` is the model's raw JSON.
    """
    if args is None:
        return {}, None
    if isinstance(args, dict):
        return args, None
    if isinstance(args, str | bytes):
        text = args.decode(errors="replace") if isinstance(args, bytes) else args
        try:
            value = msgspec.json.decode(args) if text.strip() else {}
        except (msgspec.DecodeError, UnicodeEncodeError, RecursionError) as exc:
            # a lone surrogate cannot be UTF-8; nesting deeper than the stack is no JSON
            # a tool can take: both are the model's bad arguments, recorded as failed
            why = type(exc).__name__ if not isinstance(exc, msgspec.DecodeError) else exc
            return {}, f"arguments are not valid JSON ({why}): {text!r:.200}"
        if isinstance(value, dict):
            return value, None
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        return {}, f"arguments must be a JSON object, got {kind}: {text!r:.200}"
    kind = _JSON_KINDS.get(type(args), type(args).__name__)
    return {}, f"arguments must be a JSON object, got {kind}: {args!r:.200}"


def _latest(state: SessionState, call_id: str) -> ToolCall:
    """The newest call journaled under ``call_id`` (``call_id``, ``call_id#2``, …)."""
    call, n = state.calls[call_id], 2
    while (later := state.calls.get(f"{call_id}#{n}")) is not None:
        call, n = later, n + 1
    return call


def _fresh(state: SessionState, call_id: str) -> str:
    """The journal id for a new call the framework sent under a used ``call_id``."""
    n = 2
    while f"{call_id}#{n}" in state.calls:
        n += 1
    return f"{call_id}#{n}"


async def _dedupe(tools: ToolRuns, session: Handle, call: ToolCall) -> ToolOutcome:
    session.emit("tool.deduplicated", call_id=call.call_id, status=call.status)
    run = tools.running.get((session.id, call.call_id))
    if run is not None and not call.terminal:
        ended = await asyncio.shield(run.task)
        return msgspec.structs.replace(ended, deduplicated=True)
    return outcome(call, deduplicated=True)


def launch(
    tools: ToolRuns, session: Handle, spec: ToolSpec, call: ToolCall, *, attempt: int
) -> Run:
    """Record the start and start the call's task (which first makes the start durable).

    The run is registered at once, so a repeated call id awaits it from this moment.
    """
    key = call.idempotency_key or idempotency_key(session.id, call.call_id)
    session.record(ev.ToolStarted, call_id=call.call_id, attempt=attempt, idempotency_key=key)
    compensated = session.state.calls.get(call.compensates) if call.compensates else None
    ctx = ToolContext(
        session,
        call,
        limit=tools.max_result_bytes,
        compensates=outcome(compensated) if compensated is not None else None,
    )
    run_key = (session.id, call.call_id)
    started_seq = session.state.seq
    task = asyncio.get_running_loop().create_task(
        _execute(tools, session, spec, ctx, run_key, started_seq),
        name=f"callstate-tool-{spec.name}",
    )
    task.add_done_callback(_retrieve)
    run = Run(session=session, spec=spec, task=task)
    tools.running[run_key] = run
    return run


def _retrieve(task: asyncio.Task[ToolOutcome]) -> None:
    # an error also reaches whoever awaits the run; this keeps an unawaited re-run quiet
    if not task.cancelled():
        task.exception()


async def _await(run: Run) -> ToolOutcome:
    if run.spec.on_interrupt == "complete":
        # the tool finishes (and records) even if whoever awaits it is cancelled
        return await asyncio.shield(run.task)
    return await run.task


async def _execute(
    tools: ToolRuns,
    session: Handle,
    spec: ToolSpec,
    ctx: ToolContext,
    run_key: tuple[str, str],
    started_seq: int,
) -> ToolOutcome:
    call = session.state.calls[ctx.call_id]
    try:
        try:
            await session.flush()  # write-ahead: durable before the function runs
        except asyncio.CancelledError:
            run = tools.running.get(run_key)
            reason = run.cancel_reason if run is not None else None
            _uncancel()
            why = {"closed": "the session was closed"}.get(reason or "", reason or "cancelled")
            with contextlib.suppress(CallstateError):
                cancel_call(session, call, f"{why} before the tool started")
            return outcome(call)
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
            return outcome(call)
        end = await _call(tools, session, spec, ctx, run_key)
        return await _land(tools, session, ctx.call_id, end)
    finally:
        tools.running.pop(run_key, None)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # the cancellation is handled: the outcome is recorded


async def _call(
    tools: ToolRuns, session: Handle, spec: ToolSpec, ctx: ToolContext, run_key: tuple[str, str]
) -> Terminal:
    """Run the function once and say how it ended (never raises but for ``closed``)."""
    try:
        kwargs = spec.bind(dict(session.state.calls[ctx.call_id].args))
    except ToolArgumentsError as exc:  # a re-run under a signature that changed since
        return Terminal("failed", error=str(exc), error_type=type(exc).__name__)
    if spec.wants_ctx:
        kwargs["ctx"] = ctx
    timer = asyncio.timeout(spec.timeout_s)
    try:
        async with timer:
            value = await spec.fn(**kwargs)
    except asyncio.CancelledError:
        run = tools.running.get(run_key)
        reason = (run.cancel_reason if run is not None else None) or "cancelled"
        if reason == "closed":
            raise  # the process lets go of the session: the call stays in doubt
        _uncancel()
        if spec.effect == "write":  # cut off mid-flight: it may or may not have happened
            return Terminal("unknown", error=f"write cut off mid-flight ({reason})")
        return Terminal("cancelled", error=reason)
    except Exception as exc:
        if isinstance(exc, TimeoutError) and timer.expired():
            error = f"tool {spec.name!r} timed out after {spec.timeout_s:g}s"
            return Terminal("failed", error=error, error_type="TimeoutError")
        return Terminal(
            "failed", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__
        )
    return _succeeded(spec, ctx.call_id, value, tools.max_result_bytes, tools.host.limits)


def _succeeded(spec: ToolSpec, call_id: str, value: Any, limit: int, limits: Limits) -> Terminal:
    what = f"result of tool {spec.name!r} (call {call_id!r})"
    try:
        result = encode_payload(value, what=what, limit=limit)
        check_value(result, field=what, limits=limits)  # what the session may record
    except CallstateError as exc:
        # the tool ran; only its result cannot be stored. Say so: a write did happen.
        error = f"the tool ran to completion but its result cannot be recorded: {exc}"
        return Terminal("failed", error=error, error_type=type(exc).__name__)
    return Terminal("succeeded", result=result)


async def _land(tools: ToolRuns, session: Handle, call_id: str, end: Terminal) -> ToolOutcome:
    """Record a call's outcome on ``session``, or pass it on if it can't."""
    call = session.state.calls[call_id]
    if call.terminal:  # the session's end already settled it
        return outcome(call)
    if not session.writable:
        return await hand_over(tools, session, call, end)
    held = "landed after a barge-in" if call.overtaken else None
    if call.effect != "write":
        # nothing needs a read's outcome durable before it returns: it rides the next commit
        with session.lazily():
            record_terminal(session, call, end)
            after_terminal(tools, session, call, held_reason=held)
        return outcome(call)
    record_terminal(session, call, end)
    after_terminal(tools, session, call, held_reason=held)
    try:
        await session.flush()  # the agent speaks about a write next: make it durable
    except CallstateError:
        if session.error is not None:  # fenced: the recorded event was dropped
            return await hand_over(tools, session, call, end)
        # the store is down: the outcome stays queued and is written when it is back
    return outcome(call)
