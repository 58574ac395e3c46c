"""Answering function calls: each call once, then one ``response.create`` per response.

A server may reuse a ``call_id`` for a new call (some OpenAI-compatible ones call every
function ``call_0``): the guard journals it as ``call_0#2``, and its output goes back
under the id the server knows (``ToolCall.wire_id``). A response waits for each of its
calls by what the guard made of it, never by the id on the wire.

A response may ask for several calls at once (parallel tool calls). The model is asked
to go on only when that response is done and every one of its calls has its output in
the conversation; asking after the first would make it answer twice.

Outcomes reach the model however they land: the adapter listens to the session
(``Session.on_outcome``, with what is still owed first) and answers from a task the
moment one lands, a call re-run by a resume on a silent line included, and records
each output it sends as given to the model (``Session.given_to_model``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ...errors import CallstateError
from ...session import Session
from ...tools.registry import ToolOutcome
from .._replay import function_output

__all__ = ["Answers"]

#: the group of calls replayed into a new session without an output (no response of theirs)
REPLAYED: Final = "callstate.replayed"
#: how a call still running through the guard is named in its response's group
_ASK: Final = "\x00ask:"
#: how the adapter signs what it gave the model (``tool.context_delivered``'s ``via``)
VIA: Final = "openai_realtime"


class Answers:
    """The function-call half of ``RealtimeAdapter``."""

    callstate: Session
    connection: Any
    _tasks: set[asyncio.Task[None]]
    _lock: asyncio.Lock
    _calls: set[str]
    _answered: set[str]
    _failed: set[str]  # answered by the adapter itself: nothing could be recorded
    _resolved: set[str]  # journal call ids a function_call item of this session asked for
    _again: dict[str, int]  # call id -> outputs owed to items that asked for it again
    _repeated: set[str]  # call ids answered again, whose response should now speak
    _groups: dict[str, set[str]]  # response id -> its call ids
    _responded: set[str]  # response ids whose response.done arrived
    _switching: bool
    _active: str | None
    _pending_create: str | None
    _speaking: bool
    _marker: int
    _want: int | None
    _want_event: dict[str, Any] | None
    _closing: bool
    _unsubscribe: Callable[[], None] | None

    if TYPE_CHECKING:

        async def _send_internal(self, event: dict[str, Any]) -> str: ...
        async def _raw_send(self, event: dict[str, Any]) -> None: ...
        def _later(self, op: Callable[[], None]) -> None: ...

    def _watch(self) -> None:
        """Listen for outcomes landing on the session, those still owed first."""
        self._unwatch()
        self._unsubscribe = self.callstate.on_outcome(self._landed, owed=True)

    def _unwatch(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _landed(self, outcome: ToolOutcome) -> Any:
        return self._deliver()

    async def _deliver(self) -> None:
        """An outcome landed: answer it now, not at the next server event."""
        if not self._closing:
            async with self._lock:
                await self._sync_outputs()

    def _given(self, call_id: str) -> None:
        if self.callstate.writable and call_id in self.callstate.state.calls:
            self.callstate.given_to_model(call_id, via=VIA)

    def _call_asked(self, response_id: str | None, call_id: str, name: str, args: str) -> None:
        """A response asked for a call: run it (in conversation order) and group it."""
        group = self._groups.setdefault(response_id or REPLAYED, set())
        if not self.run_tools:
            self._calls.add(call_id)
            group.add(call_id)
            return
        # the guard says which call this is (a reused id is a new call, ``id#n``): until
        # it has, the response waits on a placeholder no answer can match
        self._asks += 1
        ask = f"{_ASK}{self._asks}"
        group.add(ask)
        self._later(lambda: self._start_tool(call_id, name, args, ask))

    run_tools: bool
    _asks: int

    def _start_tool(self, call_id: str, name: str, arguments: str, ask: str) -> None:
        # the raw JSON goes to the guard: text that is not an object is a failed call,
        # journaled with the reason, as an unknown name is
        self._spawn(self._run_tool(call_id, name, arguments, ask))

    def _resolve(self, ask: str, call_id: str) -> None:
        """The call a placeholder stood for is known: its response now waits on that."""
        if call_id in self._resolved:
            # the model asked again under an id it used, with the same arguments: the
            # guard gives the recorded outcome, and this item needs its own output
            self._again[call_id] = self._again.get(call_id, 0) + 1
        self._resolved.add(call_id)
        self._calls.add(call_id)
        for calls in self._groups.values():
            if ask in calls:
                calls.discard(ask)
                calls.add(call_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_tool(self, call_id: str, name: str, args: str, ask: str) -> None:
        session = self.callstate
        try:
            outcome = await session.run_tool(name, args, call_id=call_id)
            self._resolve(ask, outcome.call_id)  # ``id#n`` when the model reused the id
        except CallstateError as exc:
            self._resolve(ask, call_id)
            if call_id not in session.state.calls and call_id not in self._answered:
                # nothing was recorded, yet the model still needs its one answer
                self._answered.add(call_id)
                self._failed.add(call_id)
                output = json.dumps({"status": "failed", "error": str(exc)})
                item = {"type": "function_call_output", "call_id": call_id, "output": output}
                await self._send_internal({"type": "conversation.item.create", "item": item})
        except BaseException:
            self._resolve(ask, call_id)  # cancelled with the adapter: nothing waits on it
            raise
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
            self._given(call_id)
        for call_id, count in list(self._again.items()):
            call = state.calls.get(call_id)
            if call_id not in self._answered or call is None or not call.terminal:
                continue  # the first output goes first
            del self._again[call_id]
            self._repeated.add(call_id)
            wire = call.wire_id or call_id
            item = {
                "type": "function_call_output",
                "call_id": wire,
                "output": function_output(call),
            }
            for _ in range(count):
                await self._send_internal({"type": "conversation.item.create", "item": item})
        await self._release_groups()

    async def _release_groups(self) -> None:
        """Ask for the answer to each finished response whose calls all have outputs."""
        state = self.callstate.state
        speak = False
        for rid, calls in list(self._groups.items()):
            if (
                rid not in self._responded
                or not calls <= self._answered
                or calls & self._again.keys()
            ):
                continue
            del self._groups[rid]
            for call_id in calls:
                call = state.calls.get(call_id)
                # a held result waits for the caller's turn; a newer turn supersedes the call
                voiced = call is not None and call.delivery != "held" and state.turn <= call.turn
                again = call_id in self._repeated  # asked again: the model waits on it now
                self._repeated.discard(call_id)
                speak = speak or voiced or again or call_id in self._failed
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
