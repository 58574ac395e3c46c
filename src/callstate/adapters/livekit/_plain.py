"""Plain LiveKit function tools in the journal, and the one check a handoff needs.

LiveKit runs a plain ``@function_tool`` (one ``guarded_tools`` did not make, the tool
returning the next agent included) itself. callstate records each such call where
LiveKit acts: requested and started when it dispatches the call (``ToolCallStarted``),
its outcome from the output LiveKit hands the model (``function_tools_executed``), or
from the call's end when no such output comes (cancelled, or a deferred final result).
callstate does not know what a plain tool does, so it is recorded as a non-idempotent
write: never re-run, and left ``unknown`` (to verify with the caller) if the worker dies
inside it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from livekit.agents import AgentSession, llm
from livekit.agents.voice.events import FunctionToolsExecutedEvent, ToolCallEnded

from ...errors import ConfigError
from ...journal import events as ev
from ...session import Session

__all__ = ["GUARDED", "PlainCalls", "handoff_needs_secret"]

#: Attribute ``guarded_tools`` sets on the functions it makes (LiveKit copies a tool
#: function's attributes onto the tool object, bound copies included).
GUARDED: Final = "callstate_guarded"

_NO_SECRET: Final = (
    "a LiveKit agent handoff moves the call to the new agent with a signed handoff "
    "package: create the Keeper with secret=..."
)


def handoff_needs_secret(session: Session, agents: Iterable[str]) -> None:
    """Refuse, before the call starts, agents to hand off between on a keeper that cannot sign.

    Raises:
        ConfigError: more than one agent is registered and the keeper has no ``secret``.
    """
    names = sorted(agents)
    if len(names) > 1 and not session.keeper.secrets:
        msg = f"agents={names} can hand the call to each other, but {_NO_SECRET}"
        raise ConfigError(msg)


def _function_tools(
    tools: Iterable[Any],
) -> Iterator[llm.FunctionTool[..., Any] | llm.RawFunctionTool[..., Any]]:
    for tool in tools:
        if isinstance(tool, llm.FunctionTool | llm.RawFunctionTool):
            yield tool
        elif isinstance(tool, llm.Toolset):
            yield from _function_tools(tool.tools)


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


class PlainCalls:
    """Records the plain function tool calls of one ``AgentSession``.

    Args:
        agent_session: the LiveKit session.
        session: returns the callstate session currently recorded into.
        rec: records a change now (or once a pending handoff is accepted).
        utterance: returns the agent utterance under way, if any.
    """

    def __init__(
        self,
        agent_session: AgentSession[Any],
        session: Callable[[], Session],
        rec: Callable[[Callable[[], Any]], None],
        utterance: Callable[[], str | None],
    ) -> None:
        self._lk = agent_session
        self._session = session
        self._rec = rec
        self._utterance = utterance
        self._mine: set[str] = set()  # call ids recorded here

    def _plain(self, name: str) -> bool:
        tools = list(self._lk.tools)
        with contextlib.suppress(RuntimeError):  # not started
            tools += self._lk.current_agent.tools
        found = [t for t in _function_tools(tools) if t.info.name == name]
        return bool(found) and not any(getattr(t, GUARDED, False) for t in found)

    def started(self, call: llm.FunctionCall) -> None:
        """LiveKit dispatched ``call``: record a plain tool's intent."""
        if not self._plain(call.name):
            return  # a guarded tool records itself through the guard
        uid = self._utterance()

        def record() -> None:
            s = self._session()
            if call.call_id in s.state.calls:
                return
            self._mine.add(call.call_id)
            s.record(
                ev.ToolRequested,
                call_id=call.call_id,
                name=call.name,
                args=_args(call.arguments),
                effect="write",
                idempotent=False,
                utterance_id=uid,
                turn=s.state.turn,
            )
            s.record(ev.ToolStarted, call_id=call.call_id)

        self._rec(record)

    def _finish(self, call_id: str, *, output: str | None, error: str | None) -> None:
        s = self._session()
        call = s.state.calls.get(call_id)
        if call_id not in self._mine or call is None or call.terminal:
            return
        if error is not None:
            s.record(ev.ToolFailed, call_id=call_id, error=error, error_type="ToolError")
        else:
            s.record(ev.ToolSucceeded, call_id=call_id, result=output or None)

    def executed(self, event: FunctionToolsExecutedEvent) -> None:
        """LiveKit hands the model the outputs of a batch of calls: record plain ones."""
        for call, out in event.zipped():
            self._rec(self._finisher(call.call_id, str(out.output), out.is_error))

    def _finisher(self, call_id: str, text: str, is_error: bool) -> Callable[[], None]:
        error = text if is_error else None
        return lambda: self._finish(call_id, output=text, error=error)

    def ended(self, update: ToolCallEnded) -> None:
        """A call's task ended: record what no output batch will (cancelled, deferred)."""
        if update.status == "cancelled":
            cid = update.call_id

            def record() -> None:
                s = self._session()
                call = s.state.calls.get(cid)
                if cid in self._mine and call is not None and not call.terminal:
                    s.record(ev.ToolCancelled, call_id=cid, reason="cancelled by LiveKit")

            self._rec(record)
        elif update.id != update.call_id:  # a deferred final result, after ctx.update()
            error = update.message if update.status == "error" else None
            self._rec(lambda: self._finish(update.call_id, output=update.message, error=error))

    def refuse_unsigned_handoff(self, event: FunctionToolsExecutedEvent) -> ConfigError | None:
        """Stop a handoff the keeper cannot sign, before LiveKit moves to the new agent.

        The tool's output tells the model the handoff did not happen (and asks for a
        reply, so the caller hears it); the error is returned for the app to see.
        """
        if not event.has_agent_handoff or self._session().keeper.secrets:
            return None
        event.cancel_agent_handoff()
        error = ConfigError(f"the handoff did not happen: {_NO_SECRET}")
        for out in event.function_call_outputs:
            if not out.is_error and not out.output:  # the call that returned the agent
                out.output = str(error)
                out.is_error = True
                out.reply_required = True
        return error
