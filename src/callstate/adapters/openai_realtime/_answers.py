"""Answering function calls: each ``call_id`` once, then one ``response.create`` per response.

A response may ask for several calls at once (parallel tool calls). The model is asked
to go on only when that response is done and every one of its calls has its output in
the conversation; asking after the first would make it answer twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...errors import CallstateError
from ...session import Session
from ._replay import function_output

__all__ = ["Answers"]

#: the group of calls replayed into a new session without an output (no response of theirs)
REPLAYED = "callstate.replayed"


class Answers:
    """The function-call half of ``RealtimeAdapter``."""

    callstate: Session
    connection: Any
    _tasks: set[asyncio.Task[None]]
    _lock: asyncio.Lock
    _calls: set[str]
    _answered: set[str]
    _failed: set[str]  # answered by the adapter itself: nothing could be recorded
    _groups: dict[str, set[str]]  # response id -> its call ids
    _responded: set[str]  # response ids whose response.done arrived
    _switching: bool
    _active: str | None
    _pending_create: str | None
    _speaking: bool
    _marker: int
    _want: int | None
    _want_event: dict[str, Any] | None

    if TYPE_CHECKING:

        async def _send_internal(self, event: dict[str, Any]) -> str: ...
        async def _raw_send(self, event: dict[str, Any]) -> None: ...
        def _later(self, op: Callable[[], None]) -> None: ...

    def _call_asked(self, response_id: str | None, call_id: str, name: str, args: str) -> None:
        """A response asked for a call: run it (in conversation order) and group it."""
        self._calls.add(call_id)
        self._groups.setdefault(response_id or REPLAYED, set()).add(call_id)
        if self.run_tools:
            self._later(lambda: self._start_tool(call_id, name, args))

    run_tools: bool

    def _start_tool(self, call_id: str, name: str, arguments: str) -> None:
        # the raw JSON goes to the guard: text that is not an object is a failed call,
        # journaled with the reason, as an unknown name is
        self._spawn(self._run_tool(call_id, name, arguments))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_tool(self, call_id: str, name: str, args: str) -> None:
        session = self.callstate
        try:
            outcome = await session.run_tool(name, args, call_id=call_id)
            if outcome.call_id != call_id:  # ``id#n``: the model reused the id
                self._calls.add(outcome.call_id)
                for calls in self._groups.values():
                    if call_id in calls:
                        calls.add(outcome.call_id)  # its response waits for this answer
        except CallstateError as exc:
            if call_id not in session.state.calls and call_id not in self._answered:
                # nothing was recorded, yet the model still needs its one answer
                self._answered.add(call_id)
                self._failed.add(call_id)
                output = json.dumps({"status": "failed", "error": str(exc)})
                item = {"type": "function_call_output", "call_id": call_id, "output": output}
                await self._send_internal({"type": "conversation.item.create", "item": item})
        async with self._lock:
            await self._sync_outputs()

    async def _sync_outputs(self) -> None:
        """Answer every call of this Realtime session that has an outcome and no answer yet."""
        if self._switching or self.callstate.on_hold or self.connection is None:
            return
        state = self.callstate.state
        for call_id in sorted(self._calls - self._answered):
            call = state.calls.get(call_id)
            if call is None or not call.terminal:
                continue
            self._answered.add(call_id)
            item = {
                "type": "function_call_output",
                "call_id": call.wire_id or call_id,  # the id the model sent
                "output": function_output(call),
            }
            await self._send_internal({"type": "conversation.item.create", "item": item})
        await self._release_groups()

    async def _release_groups(self) -> None:
        """Ask for the answer to each finished response whose calls all have outputs."""
        state = self.callstate.state
        speak = False
        for rid, calls in list(self._groups.items()):
            if rid not in self._responded or not calls <= self._answered:
                continue
            del self._groups[rid]
            for call_id in calls:
                call = state.calls.get(call_id)
                # a held result waits for the caller's turn; a newer turn supersedes the call
                voiced = call is not None and call.delivery != "held" and state.turn <= call.turn
                speak = speak or voiced or call_id in self._failed
        if speak:
            self._want = self._marker
            await self._try_response()

    async def _try_response(self) -> None:
        """Send an owed ``response.create`` if nothing is active and no new turn superseded it."""
        if self._want is None:
            return
        if self._want != self._marker:
            self._want = self._want_event = None
            return
        if self._active or self._pending_create or self._speaking or self._switching:
            return
        event, self._want, self._want_event = self._want_event, None, None
        if event is None:
            self._pending_create = await self._send_internal({"type": "response.create"})
        else:
            self._pending_create = event["event_id"]
            await self._raw_send(event)
