"""RealtimeAdapter: the ``openai`` realtime connection with a callstate session behind it.

User code sends and receives events as with ``client.realtime.connect()``; the adapter
sees every event on the way and keeps the session true to the call (see the package
docstring for what it does with each).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openai import WebSocketConnectionClosedError
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed

from ...errors import CallstateError
from ...session import Session
from ._api import Namespaces
from ._audio import bytes_per_ms, delta_ms, heard_text
from ._continuity import Continuity, RestoreStats
from ._replay import function_output, merge_config

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["RealtimeAdapter", "RestoreStats"]

_SENT_MEMORY = 1024  # client events remembered for mapping errors back


class RealtimeAdapter(Continuity):
    """An open Realtime connection bound to a callstate ``Session``; see ``connect``."""

    def __init__(
        self,
        client: AsyncOpenAI,
        session: Session,
        *,
        model: str,
        config: dict[str, Any] | None = None,
        playback: Callable[[], int | None] | None = None,
        run_tools: bool = True,
        max_session_s: float = 3600.0,
        rollover_margin_s: float = 300.0,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 0.5,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.callstate = session
        self.model = model
        self.config: dict[str, Any] = dict(config or {})
        self.playback = playback
        self.run_tools = run_tools
        self.max_session_s = max_session_s
        self.rollover_margin_s = rollover_margin_s
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        self._options = dict(connect_options or {})
        user_cb = self._options.get("on_reconnecting")
        if user_cb is not None:  # the SDK re-dials by itself: hold until session.created
            self._options["on_reconnecting"] = self._sdk_redial_then(user_cb)
        ns = Namespaces.bind(self.send)
        self.session, self.response = ns.session, ns.response
        self.conversation, self.input_audio_buffer = ns.conversation, ns.input_audio_buffer
        self.connection: AsyncRealtimeConnection | None = None
        self.realtime_session_id: str | None = None
        self.restore_stats: RestoreStats | None = None
        self._ready: deque[Any] = deque()
        self._sent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._internal: set[str] = set()
        self._n = 0
        self._rt = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._switching = False
        self._closing = False
        self._marker = 0  # bumps when the caller starts a new turn
        self._want: int | None = None  # a response.create owed, with the marker it was for
        self._want_event: dict[str, Any] | None = None  # the user's own, when it was theirs
        self._events: Any = None  # the SDK's event iterator (it re-dials when asked to)
        self._reset_realtime()

    def _reset_realtime(self) -> None:
        """Forget what the previous Realtime session held: the new one is empty."""
        self._rt += 1
        self._rt_started = self.callstate.keeper.clock.now()
        self._calls: set[str] = set()
        self._answered: set[str] = set()
        self._audio: dict[str, int] = {}
        self._texts: dict[str, str] = {}
        self._partials: dict[str, str] = {}
        self._replayed: set[str] = set()
        self._awaiting: set[str] = set()  # replayed items not acknowledged yet
        self._resumed: Any = None  # the ResumedEvent, yielded once the replay is acknowledged
        self._swallow_updates = 0
        self._active: str | None = None
        self._pending_create: str | None = None
        self._speaking = False
        self._open: str | None = None
        self._streaming: set[str] = set()  # assistant items whose output is not done yet

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RealtimeAdapter:
        created = await self._dial()
        self._ready.append(created)
        state = self.callstate.state
        if state.items[state.summarized :] or state.summary:
            recovery = self.callstate.recovery
            note = getattr(recovery, "resume_note", "") or ""
            await self._replay_into("resume", note=note, gap=getattr(recovery, "gap_s", 0.0))
        elif self.config:
            session = {"type": "realtime", **self.config}
            await self._send_internal({"type": "session.update", "session": session})
            self._swallow_updates += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Let running tools record their outcomes, then close the websocket."""
        self._closing = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()

    async def _dial(self) -> Any:
        """Open a new Realtime session and make it current; returns its ``session.created``.

        Raises:
            ConnectionError: no session could be opened in ``reconnect_attempts`` tries.
        """
        last: Exception | None = None
        attempts = max(1, self.reconnect_attempts)
        for attempt in range(attempts):
            try:
                conn = await self.client.realtime.connect(model=self.model, **self._options).enter()
                events = conn.__aiter__()
                created: Any = await events.__anext__()
            except Exception as exc:  # any failure to open is retried, then raised
                last = exc
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.reconnect_delay * (2**attempt))
                continue
            self.connection, self._events = conn, events
            self.realtime_session_id = getattr(created.session, "id", None)
            return created
        msg = f"could not open a Realtime session after {attempts} attempts: {last}"
        raise ConnectionError(msg) from last

    # -- receiving ---------------------------------------------------------------------

    def __aiter__(self) -> RealtimeAdapter:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.recv()
        except ConnectionClosed as exc:
            raise StopAsyncIteration from exc

    async def recv(self) -> Any:
        """The next server event (an ``openai.types.realtime`` model) or a ``ResumedEvent``."""
        while True:
            if self._ready:
                return self._ready.popleft()
            await self._maybe_rollover()
            if self._ready:
                continue
            if self._events is None:
                msg = "use the adapter as an async context manager (async with connect(...))"
                raise RuntimeError(msg)
            try:
                event = await self._events.__anext__()
            except (ConnectionClosed, StopAsyncIteration, WebSocketConnectionClosedError) as exc:
                if self._closing:
                    raise ConnectionClosed(None, None) from exc
                await self._restore("drop", close_code=self._close_code(exc))
                continue
            out = await self._on_event(event)
            await self._sync_outputs()
            if out is not None:
                return out

    def _close_code(self, exc: BaseException) -> int:
        """The close code of a drop: from the close frame, else 1006 (no frame: abnormal)."""
        if isinstance(exc, StopAsyncIteration):  # the SDK ends iteration on a clean close
            ws = getattr(self.connection, "_connection", None)
            return int(getattr(ws, "close_code", None) or 1000)
        closed = exc if isinstance(exc, ConnectionClosed) else exc.__cause__
        rcvd = getattr(closed, "rcvd", None)
        return int(rcvd.code) if rcvd is not None else 1006

    def source_of(self, error: Any) -> dict[str, Any] | None:
        """The client event an ``error`` server event answers (matched by ``event_id``)."""
        eid = getattr(getattr(error, "error", None), "event_id", None)
        return self._sent.get(eid) if eid else None

    async def _on_event(self, ev: Any) -> Any:
        s = self.callstate
        t = ev.type
        if t == "session.created":  # the first one was read when dialling: this is a new session
            await self._restore("new_session", created=ev)
            return None
        if t == "session.updated" and self._swallow_updates:
            self._swallow_updates -= 1
            return None
        if t in ("conversation.item.added", "conversation.item.done", "conversation.item.created"):
            if ev.item.id in self._replayed:
                self._acknowledged(ev.item.id)
                return None
        elif t == "input_audio_buffer.speech_started":
            self._marker += 1
            self._speaking = True
            if self.playback is not None and self._open is not None:
                played = self.playback()
                if played is not None:
                    await self._truncate(self._open, played, None)
        elif t in ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"):
            self._speaking = False
        elif t == "conversation.item.input_audio_transcription.delta":
            text = self._partials.get(ev.item_id, "") + (ev.delta or "")
            self._partials[ev.item_id] = text
            s.user_partial(text)
        elif t == "conversation.item.input_audio_transcription.completed":
            self._partials.pop(ev.item_id, None)
            self._speaking = False
            self._finish_open()
            s.user_said(ev.transcript)
        elif t == "response.created":
            self._active = ev.response.id
            self._pending_create = None
            self._want = None  # this response already sees everything sent before it
        elif t == "response.output_item.added" and ev.item.type == "message":
            self._finish_open()
            self._open = ev.item.id
            self._streaming.add(ev.item.id)
            self._texts[ev.item.id] = ""
            self._audio[ev.item.id] = 0
            s.agent_started("", utterance_id=ev.item.id)
        elif t == "response.output_item.added" and ev.item.type == "function_call":
            self._calls.add(ev.item.call_id)
        elif t in ("response.output_audio_transcript.delta", "response.output_text.delta"):
            text = self._texts.get(ev.item_id, "") + ev.delta
            self._texts[ev.item_id] = text
            if ev.item_id == self._open:
                s.agent_progress(ev.item_id, spoken_text=text, text=text)
        elif t == "response.output_audio.delta":
            per = bytes_per_ms(self.config)
            self._audio[ev.item_id] = self._audio.get(ev.item_id, 0) + delta_ms(ev.delta, per)
        elif t == "response.output_item.done":
            self._streaming.discard(ev.item.id)
        elif t == "response.function_call_arguments.done":
            self._calls.add(ev.call_id)
            if self.run_tools:
                self._start_tool(ev.call_id, ev.name, ev.arguments)
        elif t == "response.done":
            self._active = None
            self._pending_create = None
            await self._try_response()
        elif t == "error":
            return await self._on_error(ev)
        return ev

    def _acknowledged(self, item_id: str) -> None:
        """A replayed item is in the new session (or was refused): resumed once all are."""
        stats = self.restore_stats
        if stats is not None and stats.first_ack_at is None:
            stats.first_ack_at = time.perf_counter()
        self._awaiting.discard(item_id)
        if not self._awaiting and self._resumed is not None:
            self._ready.append(self._resumed)
            self._resumed = None

    async def _on_error(self, ev: Any) -> Any:
        code, eid = ev.error.code, ev.error.event_id
        source = self._sent.get(eid) if eid else None
        if source is not None and (source.get("item") or {}).get("id") in self._awaiting:
            self._acknowledged(source["item"]["id"])
        if code == "session_expired":
            await self._restore("session_expired")
            return None
        if eid in self._internal and code == "conversation_already_has_active_response":
            # raced a server-made response: ask again once it is done
            self._pending_create = None
            self._want = self._marker
            self._want_event = None
            return None
        if eid is not None and eid == self._pending_create:
            self._pending_create = None
        return ev

    # -- sending -----------------------------------------------------------------------

    def _stamp(self, event: dict[str, Any], internal: bool) -> str:
        eid = event.get("event_id")
        if not isinstance(eid, str) or not eid:
            self._n += 1
            eid = event["event_id"] = f"cs_{self._rt}_{self._n}"
        self._sent[eid] = event
        if len(self._sent) > _SENT_MEMORY:
            old, _ = self._sent.popitem(last=False)
            self._internal.discard(old)
        if internal:
            self._internal.add(eid)
        return eid

    async def _send_internal(self, event: dict[str, Any]) -> str:
        eid = self._stamp(dict(event), True)
        await self._raw_send(self._sent[eid])
        return eid

    async def _raw_send(self, event: dict[str, Any]) -> None:
        if self.connection is None:
            msg = "use the adapter as an async context manager (async with connect(...))"
            raise RuntimeError(msg)
        try:
            # events are plain JSON already: skip the SDK's per-event TypedDict transform
            await self.connection.send_raw(json.dumps(event))
        except ConnectionClosed:
            # the receive loop sees the close and restores; audio waits in the outbox
            if event["type"].startswith("input_audio_buffer."):
                self.callstate.outbox.send(event)

    async def send(self, event: dict[str, Any]) -> None:
        """Send a client event (a dict, as for ``AsyncRealtimeConnection.send``).

        The adapter stamps an ``event_id``, keeps ``session.update`` for resumes,
        records user text turns, answers each ``call_id`` once, clamps truncation to the
        audio received and holds ``response.create`` while a response is active.
        """
        event = dict(event)
        self._stamp(event, False)
        t = event.get("type")
        item = event.get("item") or {}
        if t == "session.update":
            self.config = merge_config(self.config, event.get("session") or {})
        elif t == "conversation.item.create" and item.get("role") == "user":
            text = " ".join(
                p.get("text", "") for p in item.get("content", []) if p.get("type") == "input_text"
            )
            if text:
                self._finish_open()
                self._marker += 1
                self.callstate.user_said(text)
        elif t == "conversation.item.create" and item.get("type") == "function_call_output":
            if item.get("call_id") in self._answered:
                return  # each call id is answered once per Realtime session
            self._answered.add(item.get("call_id", ""))
        elif t == "conversation.item.truncate":
            await self._truncate(event["item_id"], int(event["audio_end_ms"]), event)
            return
        elif t == "response.create":
            self._want, self._want_event = self._marker, event
            await self._try_response()
            return
        if self._switching or self.callstate.on_hold:
            if str(t).startswith("input_audio_buffer."):
                self.callstate.outbox.send(event)
            return  # the replay carries config, items and outputs into the next session
        await self._raw_send(event)

    async def _truncate(self, item_id: str, played_ms: int, event: dict[str, Any] | None) -> None:
        """Truncate an item at the played position, never past the audio received."""
        have = self._audio.get(item_id)
        if have is None:
            return  # not an audio item of this Realtime session
        end = max(0, min(played_ms, have))
        out: dict[str, Any] = (
            dict(event)
            if event is not None
            else {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
        )
        out["audio_end_ms"] = end
        if event is None:
            await self._send_internal(out)
        elif not (self._switching or self.callstate.on_hold):
            self._sent[out["event_id"]] = out
            await self._raw_send(out)
        item = self._state_item(item_id)
        if item is not None and not item.done:
            heard = heard_text(self._texts.get(item_id, item.text), end, have)
            self.callstate.interrupt(heard_text=heard, audio_end_ms=end, utterance_id=item_id)
        if self._open == item_id:
            self._open = None

    def _state_item(self, item_id: str) -> Any:
        return next(
            (
                i
                for i in reversed(self.callstate.state.items)
                if i.kind == "assistant" and i.id == item_id
            ),
            None,
        )

    def _finish_open(self) -> None:
        """The open utterance played out: nothing cut it before the next turn."""
        uid, self._open = self._open, None
        item = self._state_item(uid) if uid is not None else None
        if item is not None and not item.done:
            self.callstate.agent_finished(uid)  # type: ignore[arg-type]

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

    # -- tools ---------------------------------------------------------------------------

    def _start_tool(self, call_id: str, name: str, arguments: str) -> None:
        # the raw JSON goes to the guard: text that is not an object is a failed call,
        # journaled with the reason, as an unknown name is
        task = asyncio.get_running_loop().create_task(self._run_tool(call_id, name, arguments))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_tool(self, call_id: str, name: str, args: str) -> None:
        session = self.callstate
        try:
            outcome = await session.run_tool(name, args, call_id=call_id)
            self._calls.add(outcome.call_id)  # ``id#n`` when the model reused the id
        except CallstateError as exc:
            if call_id not in session.state.calls and call_id not in self._answered:
                # nothing was recorded, yet the model still needs its one answer
                self._answered.add(call_id)
                output = json.dumps({"status": "failed", "error": str(exc)})
                item = {"type": "function_call_output", "call_id": call_id, "output": output}
                await self._send_internal({"type": "conversation.item.create", "item": item})
        await self._sync_outputs()

    async def _sync_outputs(self) -> None:
        """Answer every call of this Realtime session that has an outcome and no answer yet."""
        if self._switching or self.callstate.on_hold or self.connection is None:
            return
        state = self.callstate.state
        speak = False
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
            # a held result waits for the caller's turn; a newer turn supersedes the call
            speak = speak or (call.delivery != "held" and state.turn <= call.turn)
        if speak:
            self._want = self._marker
            await self._try_response()
