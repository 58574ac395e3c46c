"""Tool calls for the Gemini Live adapter: through the guard, each outcome given once.

A ``toolCall`` runs through ``Session.run_tool``; its outcome reaches the model however
it lands (the adapter listens with ``Session.on_outcome(owed=True)``): as the
``toolResponse`` while the call is open on this connection, else as a ``clientContent``
note, voiced at once unless it is held for the caller's turn or a newer turn overtook it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from google.genai import types
from websockets.exceptions import ConnectionClosed

from ...errors import CallstateError
from ...journal.context import call_output
from ...journal.state import ToolCall
from ...session import Session
from ...tools.registry import ToolOutcome
from ._replay import function_response

__all__ = ["VIA", "ToolAnswers"]

#: how the adapter signs what it gave the model (``tool.context_delivered``'s ``via``)
VIA: Final = "gemini_live"


class ToolAnswers:
    """The tool-call half of ``GeminiLiveAdapter``."""

    callstate: Session
    live: Any
    run_tools: bool
    _tasks: set[asyncio.Task[None]]
    _lock: asyncio.Lock
    _open_calls: dict[str, str]  # wire id -> tool name, answerable on this connection
    _cancelled: set[str]
    _unconfirmed: list[str]
    _closing: bool
    _asks: int

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call_asked(self, fc: types.FunctionCall) -> None:
        self._asks += 1
        call_id = fc.id or f"gl-call-{self._asks}"
        name = fc.name or ""
        self._open_calls[call_id] = name
        if self.run_tools:
            self._spawn(self._run_tool(call_id, name, json.dumps(fc.args or {})))

    async def _run_tool(self, call_id: str, name: str, args: str) -> None:
        s = self.callstate
        try:
            await s.run_tool(name, args, call_id=call_id)  # its outcome lands in _landed
        except CallstateError as exc:
            if call_id in s.state.calls:
                return
            # nothing was recorded, yet the model still needs its one answer
            output = json.dumps({"status": "failed", "error": str(exc)})
            async with self._lock:
                if self._open_calls.pop(call_id, None) is not None:
                    response = function_response(name, call_id, output)
                    await self.live.send_tool_response(function_responses=[response])

    def _voiced(self, call: ToolCall, wire: str) -> bool:
        """Voiced now, unless held for the caller's turn or overtaken by a newer one."""
        turn = self.callstate.state.turn
        return call.delivery != "held" and turn <= call.turn and wire not in self._cancelled

    def _landed(self, outcome: ToolOutcome) -> Any:
        return self._deliver()

    async def _deliver(self) -> None:
        if not self._closing:
            async with self._lock:
                await self._sync()

    async def _sync(self) -> None:
        """Give the model every outcome it is owed: as the ``toolResponse`` when the call
        is open on this connection, else as a ``clientContent`` note (a call cancelled by
        a barge-in, asked on an earlier connection, or re-run by a resume)."""
        s = self.callstate
        if s.on_hold or self.live is None or not s.writable:
            return
        state = s.state
        for call_id in list(state.owed_to_model):
            call = state.calls.get(call_id)
            if call is None or not call.terminal or call_id in self._unconfirmed:
                continue
            wire = call.wire_id or call_id
            output = call_output(call)
            try:
                if wire in self._open_calls and wire not in self._cancelled:
                    response = function_response(call.name, wire, output)
                    await self.live.send_tool_response(function_responses=[response])
                else:
                    voiced = self._voiced(call, wire)
                    note = f"(result of {call.name}, call {wire}: {output})"
                    turn = types.Content(role="user", parts=[types.Part(text=note)])
                    await self.live.send_client_content(turns=[turn], turn_complete=voiced)
            except ConnectionClosed:
                return  # the line dropped: still owed, the reconnect delivers it
            self._open_calls.pop(wire, None)
            # given once a resumable handle covers it: a reply lost with the line stays owed
            self._unconfirmed.append(call_id)
