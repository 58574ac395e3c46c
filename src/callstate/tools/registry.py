"""Tools: the registry of async tool functions, their policies, and what a call returns.

A tool is an ``async def`` registered with its policy::

    tools = ToolRegistry()

    @tools.tool(effect="write", idempotent=True, compensate="undo_move")
    async def move_booking(booking_id: str, time: str, *, ctx: ToolContext) -> dict: ...

Policy: ``effect`` (``read`` is safe to re-run; ``write`` changes the world),
``idempotent`` (a write that honours ``ctx.idempotency_key``, so a re-run after a crash
applies it once), ``on_interrupt`` (``complete``, the default: a barge-in never stops
the call; ``cancel``: a read a barge-in may abandon), ``compensate`` (the tool that
undoes this write when the caller contradicts it), ``timeout_s`` and ``dedupe_intent``
(whether the same call made again in one user turn returns the first one's outcome).

Calls run through the guard (``Session.run_tool``): the intent is durable before the
function starts, the outcome is recorded whatever happens meanwhile, and a repeated
``call_id`` returns the recorded outcome instead of running again.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

import msgspec

from ..errors import (
    ConfigError,
    PayloadTooDeep,
    PayloadTooLarge,
    StaleEpochError,
    ToolArgumentsError,
    UnknownTool,
)
from ..journal import events as ev
from ..journal.state import ToolCall
from .arguments import Arguments, arguments_of
from .reconcile import Supersedes

if TYPE_CHECKING:
    from ..runtime.handle import Handle

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "ToolContext",
    "ToolOutcome",
    "ToolRegistry",
    "ToolSpec",
    "encode_payload",
    "idempotency_key",
]

#: Largest encoded result (or checkpoint, or argument set) a call may record.
DEFAULT_MAX_RESULT_BYTES: Final = 64 * 1024

OutcomeStatus = Literal["succeeded", "failed", "cancelled", "unknown"]
ToolFn = Callable[..., Awaitable[Any]]
_F = TypeVar("_F", bound=ToolFn)

_json = msgspec.json.Encoder()


def idempotency_key(session_id: str, call_id: str) -> str:
    """The key a call carries on every attempt: derived from session and call id only."""
    return hashlib.sha256(f"callstate\x00{session_id}\x00{call_id}".encode()).hexdigest()[:32]


def encode_payload(value: Any, *, what: str, limit: int) -> Any:
    """Check that ``value`` can be stored and return its JSON form (as the store keeps it).

    Raises:
        ToolArgumentsError: ``value`` is not JSON-serialisable; the message names ``what``.
        PayloadTooLarge: the encoded value is over ``limit`` bytes.
        PayloadTooDeep: it is nested too deeply to encode, or contains itself.
    """
    try:
        raw = _json.encode(value)
    except RecursionError as exc:
        msg = f"{what} is nested too deeply to encode (or contains itself)"
        raise PayloadTooDeep(msg, field=what) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"{what} is not JSON-serialisable: {exc}"
        raise ToolArgumentsError(msg) from exc
    if len(raw) > limit:
        msg = f"{what} is {len(raw)} bytes encoded, over the {limit}-byte cap"
        raise PayloadTooLarge(msg, field=what)
    try:
        return msgspec.json.decode(raw)
    except RecursionError as exc:
        msg = f"{what} is nested too deeply to decode"
        raise PayloadTooDeep(msg, field=what) from exc


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A registered tool: its function, policy and arguments type.

    ``arguments`` is built from ``signature`` when the spec is made (see
    ``callstate.tools.arguments``); None when the function has no signature.
    """

    name: str
    fn: ToolFn
    effect: ev.Effect = "read"
    idempotent: bool = False
    on_interrupt: ev.OnInterrupt = "complete"
    compensate: str | None = None
    timeout_s: float | None = None
    wants_ctx: bool = False
    signature: inspect.Signature | None = None
    arguments: Arguments | None = None
    dedupe_intent: bool | None = None  # None: the registry's rule (non-idempotent writes)

    def __post_init__(self) -> None:
        if self.arguments is None and self.signature is not None:
            object.__setattr__(self, "arguments", arguments_of(self.name, self.fn, self.signature))

    @property
    def description(self) -> str:
        """The first paragraph of the function's docstring."""
        doc = inspect.getdoc(self.fn) or ""
        return " ".join(doc.split("\n\n", 1)[0].split())

    def bind(self, args: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments (``ctx`` aside) to call the function with.

        ``args`` are checked against the signature and converted (see
        ``callstate.tools.arguments`` for the coercion rules).

        Raises:
            ToolArgumentsError: they do not fit; the message names the field and value.
        """
        if "ctx" in args and self.wants_ctx:
            msg = f"tool {self.name!r}: argument `ctx` is reserved for the ToolContext"
            raise ToolArgumentsError(msg)
        if self.arguments is None:
            return dict(args)
        return self.arguments.bind(args)

    def check_args(self, args: dict[str, Any]) -> None:
        """Raise ``ToolArgumentsError`` unless ``args`` fit the function's signature."""
        self.bind(args)

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the tool's arguments object, from the same type ``bind`` uses."""
        if self.arguments is None:
            return {"type": "object"}
        return self.arguments.json_schema()

    def function_schema(self) -> dict[str, Any]:
        """``{"name", "description", "parameters"}``: the tool as a model's function."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.json_schema(),
        }


class ToolRegistry:
    """The tools a keeper can run, by name.

    Args:
        max_result_bytes: cap on a call's encoded result, arguments and checkpoints.
        supersedes: ``(call, turns, state) -> bool`` replacing the rule that decides
            whether a held read is superseded by the caller's new turn(s)
            (default: :func:`callstate.reconcile.default_supersedes`).
        dedupe_intent: whether a non-idempotent write asked for again in the same user
            turn (same tool, same arguments, a new call id) returns the first call's
            outcome instead of running again (default True; a tool's own
            ``dedupe_intent`` overrides it, see ``callstate.tools.intent``).
    """

    def __init__(
        self,
        *,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        supersedes: Supersedes | None = None,
        dedupe_intent: bool = True,
    ) -> None:
        if max_result_bytes < 1:
            msg = f"max_result_bytes must be >= 1, got {max_result_bytes!r}"
            raise ConfigError(msg)
        self.max_result_bytes = int(max_result_bytes)
        if not isinstance(dedupe_intent, bool):
            msg = f"dedupe_intent must be True or False, got {dedupe_intent!r}"
            raise ConfigError(msg)
        self.supersedes = supersedes
        self.dedupe_intent = dedupe_intent
        self._tools: dict[str, ToolSpec] = {}

    @overload
    def tool(self, fn: _F, /) -> _F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        effect: ev.Effect = "read",
        idempotent: bool = False,
        on_interrupt: ev.OnInterrupt = "complete",
        compensate: str | None = None,
        timeout_s: float | None = None,
        dedupe_intent: bool | None = None,
    ) -> Callable[[_F], _F]: ...

    def tool(
        self,
        fn: _F | None = None,
        /,
        *,
        name: str | None = None,
        effect: ev.Effect = "read",
        idempotent: bool = False,
        on_interrupt: ev.OnInterrupt = "complete",
        compensate: str | None = None,
        timeout_s: float | None = None,
        dedupe_intent: bool | None = None,
    ) -> _F | Callable[[_F], _F]:
        """Register an ``async def`` as a tool (usable bare or with policy arguments).

        Raises:
            ConfigError: not an async function, a name already taken, or a bad policy.
        """

        def register(f: _F) -> _F:
            self.add(
                f,
                name=name,
                effect=effect,
                idempotent=idempotent,
                on_interrupt=on_interrupt,
                compensate=compensate,
                timeout_s=timeout_s,
                dedupe_intent=dedupe_intent,
            )
            return f

        return register(fn) if fn is not None else register

    def add(
        self,
        fn: ToolFn,
        *,
        name: str | None = None,
        effect: ev.Effect = "read",
        idempotent: bool = False,
        on_interrupt: ev.OnInterrupt = "complete",
        compensate: str | None = None,
        timeout_s: float | None = None,
        dedupe_intent: bool | None = None,
    ) -> ToolSpec:
        """Register ``fn`` under ``name`` (default: its ``__name__``); see :meth:`tool`."""
        tool_name = name if name is not None else getattr(fn, "__name__", "")
        if not isinstance(tool_name, str) or not tool_name:
            msg = f"a tool needs a non-empty string name, got {tool_name!r}"
            raise ConfigError(msg)
        if not inspect.iscoroutinefunction(fn):
            msg = f"tool {tool_name!r} must be an `async def` function, got {fn!r}"
            raise ConfigError(msg)
        if tool_name in self._tools:
            msg = f"a tool named {tool_name!r} is already registered"
            raise ConfigError(msg)
        if effect not in ("read", "write"):
            msg = f"tool {tool_name!r}: effect must be 'read' or 'write', got {effect!r}"
            raise ConfigError(msg)
        if on_interrupt not in ("complete", "cancel"):
            msg = f"tool {tool_name!r}: on_interrupt must be 'complete' or 'cancel', got {on_interrupt!r}"
            raise ConfigError(msg)
        if on_interrupt == "cancel" and effect == "write":
            # a write cut off mid-flight may or may not have happened: never cancel one
            msg = (
                f"tool {tool_name!r}: on_interrupt='cancel' is for reads; a write always completes"
            )
            raise ConfigError(msg)
        if compensate is not None and (effect != "write" or not isinstance(compensate, str)):
            msg = f"tool {tool_name!r}: compensate={compensate!r} needs effect='write' and a tool name"
            raise ConfigError(msg)
        if timeout_s is not None and not (isinstance(timeout_s, int | float) and timeout_s > 0):
            msg = f"tool {tool_name!r}: timeout_s must be a positive number, got {timeout_s!r}"
            raise ConfigError(msg)
        if dedupe_intent is not None and not isinstance(dedupe_intent, bool):
            msg = f"tool {tool_name!r}: dedupe_intent must be True, False or None, got {dedupe_intent!r}"
            raise ConfigError(msg)
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # builtins without a signature: accept any kwargs
            signature = None
        ctx_param = signature.parameters.get("ctx") if signature is not None else None
        if ctx_param is not None and ctx_param.kind is inspect.Parameter.POSITIONAL_ONLY:
            msg = f"tool {tool_name!r}: `ctx` must be passable by keyword"
            raise ConfigError(msg)
        spec = ToolSpec(
            name=tool_name,
            fn=fn,
            effect=effect,
            idempotent=bool(idempotent),
            on_interrupt=on_interrupt,
            compensate=compensate,
            timeout_s=float(timeout_s) if timeout_s is not None else None,
            wants_ctx=ctx_param is not None,
            signature=signature,
            dedupe_intent=dedupe_intent,
        )
        self._tools[tool_name] = spec
        return spec

    def get(self, name: str) -> ToolSpec:
        """The tool registered as ``name``.

        Raises:
            UnknownTool: nothing is registered under ``name``.
        """
        try:
            return self._tools[name]
        except KeyError:
            msg = f"no tool named {name!r} is registered (known: {sorted(self._tools)})"
            raise UnknownTool(msg) from None

    def names(self) -> frozenset[str]:
        """Every registered tool name."""
        return frozenset(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one tool call ended: plain data.

    ``status`` is ``succeeded``, ``failed``, ``cancelled`` or ``unknown`` (a write that
    may or may not have taken effect: verify with the caller). ``deduplicated`` is True
    when the call id had been seen and the recorded outcome was returned instead of
    running again, or when the call repeated an earlier call's intent in the same user
    turn (then ``duplicate_of`` names that call, whose outcome this is). ``delivery``
    is the spoken-delivery decision (``held``, ``delivered``, ``discarded``,
    ``announced``, ``compensated``) or None when the result was never held. ``overtaken`` is True when a barge-in happened while the call was in flight.
    """

    call_id: str
    name: str
    status: OutcomeStatus
    result: Any = None
    error: str | None = None
    error_type: str = ""
    deduplicated: bool = False
    duplicate_of: str | None = None
    delivery: ev.Delivery | None = None
    overtaken: bool = False
    effect: ev.Effect = "read"
    attempt: int = 0

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.status == "succeeded"

    @classmethod
    def from_call(cls, call: ToolCall, *, deduplicated: bool = False) -> ToolOutcome:
        """The outcome recorded for ``call`` (``unknown`` while it is in flight elsewhere)."""
        if call.status in ("succeeded", "failed", "cancelled", "unknown"):
            status: OutcomeStatus = call.status
            error = call.error
        else:
            status = "unknown"
            error = (
                f"call {call.call_id!r} is still in flight elsewhere ({call.status}); "
                "its outcome lands in the context when it ends"
            )
        if status == "unknown" and error is None:
            error = "the call may or may not have taken effect; verify with the caller"
        return cls(
            call_id=call.call_id,
            name=call.name,
            status=status,
            result=call.result,
            error=error,
            error_type=call.error_type,
            deduplicated=deduplicated or call.duplicate_of is not None,
            duplicate_of=call.duplicate_of,
            delivery=call.delivery,
            overtaken=call.overtaken,
            effect=call.effect,
            attempt=call.attempts,
        )


class ToolContext:
    """What a running tool knows about its call; pass ``ctx`` as a keyword parameter.

    Attributes:
        session_id: the session the call belongs to.
        call_id: the call's id.
        name: the tool's name.
        idempotency_key: derived from session and call id; identical on every attempt,
            so a write that keys its effect by it is applied once however often it runs.
        attempt: 1 on the first run, +1 on each re-run after a crash.
        progress: data recorded by earlier :meth:`checkpoint` calls (of this or an
            earlier attempt).
        compensates: for a compensating call, the outcome of the call it undoes.
    """

    def __init__(
        self,
        session: Handle,
        call: ToolCall,
        *,
        limit: int,
        compensates: ToolOutcome | None = None,
    ) -> None:
        self._session = session
        self._limit = limit
        self.session_id = session.id
        self.call_id = call.call_id
        self.name = call.name
        self.idempotency_key = call.idempotency_key
        self.attempt = call.attempts
        self.progress: dict[str, Any] = dict(call.progress)
        self.compensates = compensates

    def __repr__(self) -> str:
        return f"<ToolContext {self.name} call={self.call_id!r} attempt={self.attempt}>"

    async def checkpoint(self, data: dict[str, Any]) -> None:
        """Record progress durably; a re-run after a crash sees it merged into ``progress``.

        When the session has moved to another owner meanwhile, the data is kept in
        ``progress`` only and the tool carries on (its outcome still lands).

        Raises:
            ToolArgumentsError: ``data`` is not a JSON-serialisable dict.
            PayloadTooLarge: ``data`` is over the registry's size cap.
            StorageError: the store stayed unreachable.
        """
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            msg = f"checkpoint of call {self.call_id!r}: data must be a dict with str keys, got {data!r}"
            raise ToolArgumentsError(msg)
        clean = encode_payload(data, what=f"checkpoint of call {self.call_id!r}", limit=self._limit)
        self.progress.update(clean)
        session = self._session
        if not session.writable:
            return  # moved to another owner: kept in ``progress`` only
        session.record(ev.ToolProgress, call_id=self.call_id, data=clean)
        with contextlib.suppress(StaleEpochError):
            await session.flush()
