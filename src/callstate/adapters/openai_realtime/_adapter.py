"""RealtimeAdapter: the ``openai`` realtime connection with a callstate session behind it.

User code sends and receives events as with ``client.realtime.connect()``; the adapter
sees every event on the way and keeps the session true to the call (see the package
docstring for what it does with each).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from openai import WebSocketConnectionClosedError
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed

from ...errors import CallstateError
from ...session import Session
from .._fenced import Fence
from ._answers import Answers
from ._api import Namespaces
from ._audio import bytes_per_ms, delta_ms
from ._continuity import Continuity, RestoreStats
from ._frames import BadFrame, bad_frame, frame_problem
from ._order import Pending, Playback, TurnOrder
from ._sending import Sending

if TYPE_CHECKING:
    from collections.abc import Callable

    from openai import AsyncOpenAI

__all__ = ["RealtimeAdapter", "RestoreStats"]

log = logging.getLogger("callstate.adapters.openai_realtime")

_BAD_MEMORY = 100  # skipped frames kept for the app to inspect
_TICK = 0.5  # seconds between looks at the session cap (the clock may be a test's)
_CLOSE_WAIT = 2.0  # seconds an old socket gets to close politely before it is let go
_CLOSED = (ConnectionClosed, StopAsyncIteration, WebSocketConnectionClosedError)


class RealtimeAdapter(Continuity, Answers, TurnOrder, Sending):
    """An open Realtime connection bound to a callstate ``Session``; see ``connect``."""

    def __init__(
        self,
        client: AsyncOpenAI,
        session: Session,
        *,
        model: str,
        config: dict[str, Any] | None = None,
        playback: Playback | None = None,
        run_tools: bool = True,
        max_session_s: float = 3600.0,
        rollover_margin_s: float = 300.0,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 0.5,
        connect_options: dict[str, Any] | None = None,
        transcript_wait_s: float = 3.0,
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
        self.transcript_wait_s = transcript_wait_s
        #: frames the adapter skipped (not JSON, not an event, a field it reads missing)
        self.bad_frames: deque[BadFrame] = deque(maxlen=_BAD_MEMORY)
        #: callstate item id -> item id in the current Realtime session (replayed items
        #: get new ids; a user turn is keyed ``user@N``, N its index in ``state.items``)
        self.item_ids: dict[str, str] = {}
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
        self._closers: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one of: an event handled, a rollover, outputs synced
        self._timer: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._server_transcribes = False
        self._queue: deque[Pending | Callable[[], None]] = deque()
        self._waits: dict[str, Pending] = {}
        self._switching = False
        self._closing = False
        self._marker = 0  # bumps when the caller starts a new turn
        self._want: int | None = None  # a response.create owed, with the marker it was for
        self._want_event: dict[str, Any] | None = None  # the user's own, when it was theirs
        self._events: Any = None  # the SDK's event iterator (it re-dials when asked to)
        self._asks = 0  # calls handed to the guard, to name each one's placeholder
        self._fence = Fence(lambda: self.callstate, log, self._fenced_stop)
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
        self._unfinished: list[str] = []
        self._streaming: set[str] = set()  # assistant items whose output is not done yet
        self._failed: set[str] = set()
        self._resolved: set[str] = set()
        self._again: dict[str, int] = {}
        self._repeated: set[str] = set()
        self._groups: dict[str, set[str]] = {}
        self._responded: set[str] = set()
        self.item_ids = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RealtimeAdapter:
        async with self._lock:  # an outcome landing meanwhile is answered after the replay
            created = await self._dial()
            self._ready.append(created)
            state = self.callstate.state
            if state.items[state.summarized :] or state.summary:
                recovery = self.callstate.recovery
                note = getattr(recovery, "resume_note", "") or ""
                await self._replay_into("resume", note=note, gap=getattr(recovery, "gap_s", 0.0))
            else:
                if self.config:
                    session = {"type": "realtime", **self.config}
                    await self._send_internal({"type": "session.update", "session": session})
                    self._swallow_updates += 1
                await self._open_link()  # nothing to replay: link up, what was held goes out
                await self._try_response()
            self._watch()
        self._timer = asyncio.get_running_loop().create_task(self._cap_timer())
        self._fence.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Let running tools record their outcomes, then close the websocket."""
        self._closing = True
        self._fence.cancel()
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._fence.fenced:  # a fenced session records nothing more
            self._release_all()
        if self.connection is not None:
            await _close(self.connection)
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)

    async def _fenced_stop(self) -> None:
        """The call was taken over: stop answering and rolling over, close the socket
        (a reader waiting on it wakes and yields the ``FencedEvent``)."""
        self._unwatch()
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        if self.connection is not None:
            self._let_go(self.connection)

    def _let_go(self, old: AsyncRealtimeConnection) -> None:
        """Close a replaced socket in the background: a restore never waits on it."""

        task = asyncio.get_running_loop().create_task(_close(old))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _cap_timer(self) -> None:
        """Roll over before the session cap even when no server event arrives."""
        clock = self.callstate.keeper.clock
        while not (self._closing or self._fence.fenced):
            due = self._rt_started + self.max_session_s - self.rollover_margin_s - clock.now()
            if due > 0:
                await asyncio.sleep(min(due, _TICK))
                continue
            try:
                async with self._lock:
                    if not self._closing:
                        await self._maybe_rollover()
            except Exception:  # the reader meets the same trouble and restores from there
                if self._fence.fenced:
                    return  # taken over: the reader says so, once
                log.exception("callstate could not roll the Realtime session over")
            await asyncio.sleep(_TICK)  # not a quiet moment yet: look again

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
            self._on_session(created)
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
        except CallstateError as exc:
            if self._fence.said:  # the FencedEvent was the last one
                raise StopAsyncIteration from exc
            raise

    async def recv(self) -> Any:
        """The next server event (an ``openai.types.realtime`` model), a ``ResumedEvent``,
        or, once another keeper took the call over, one ``FencedEvent``.

        A frame that is not a usable event is skipped (logged, kept in ``bad_frames``);
        the connection stays up.

        Raises:
            StaleEpochError: (the error that fenced the session) after the ``FencedEvent``;
                the iterator ends there instead.
        """
        if not self._fence.fenced:
            try:
                return await self._next()
            except CallstateError:
                if not self._fence.fenced:
                    raise
        return await self._fence.event()

    async def _next(self) -> Any:
        while True:
            self._fence.check()
            if self._ready:
                return self._ready.popleft()
            async with self._lock:
                await self._maybe_rollover()
            if self._ready:
                continue
            events = self._events
            if events is None:
                msg = "use the adapter as an async context manager (async with connect(...))"
                raise RuntimeError(msg)
            try:
                event = await events.__anext__()
            except _CLOSED as exc:
                async with self._lock:
                    if events is not self._events:
                        continue  # an old socket, closed after a restore moved on
                    self._fence.check()  # closed because the call was taken over
                    if self._closing:
                        raise ConnectionClosed(None, None) from exc
                    await self._restore("drop", close_code=self._close_code(exc))
                continue
            except (ValueError, RecursionError) as exc:  # the SDK could not parse the frame
                # the SDK's iterator ends with the error; the websocket does not
                self._skip(f"not JSON: {exc}", getattr(exc, "doc", ""))
                if events is self._events and self.connection is not None:
                    self._events = self.connection.__aiter__()
                continue
            problem = frame_problem(event)
            if problem is not None:
                self._skip(problem, event)
                continue
            async with self._lock:
                if events is not self._events:
                    continue  # the session it belongs to was replaced meanwhile
                out = await self._on_event(event)
                await self._sync_outputs()
            if out is not None:
                return out

    def _skip(self, problem: str, frame: Any) -> None:
        bad = bad_frame(problem, frame)
        self.bad_frames.append(bad)
        log.warning("callstate skipped a Realtime server frame (%s): %.200s", problem, bad.frame)

    def _on_session(self, ev: Any) -> None:
        """Note the session's id and whether it transcribes the caller."""
        session = ev.session
        if ev.type == "session.created":
            self.realtime_session_id = getattr(session, "id", None)
        audio_in = getattr(getattr(session, "audio", None), "input", None)
        self._server_transcribes = bool(getattr(audio_in, "transcription", None))

    def _close_code(self, exc: BaseException) -> int:
        """The close code of a drop: from the close frame, else 1006 (no frame: abnormal)."""
        if isinstance(exc, StopAsyncIteration):  # the SDK ends iteration on a clean close
            ws = getattr(self.connection, "_connection", None)
            return int(getattr(ws, "close_code", None) or 1000)
        closed = exc if isinstance(exc, ConnectionClosed) else exc.__cause__
        rcvd = getattr(closed, "rcvd", None)
        return int(rcvd.code) if rcvd is not None else 1006

    async def _on_event(self, ev: Any) -> Any:
        s = self.callstate
        t = ev.type
        if t == "session.created":  # the first one was read when dialling: this is a new session
            await self._restore("new_session", created=ev)
            return None
        if t == "session.updated":
            self._on_session(ev)
            if self._swallow_updates:
                self._swallow_updates -= 1
                return None
        elif t in (
            "conversation.item.added",
            "conversation.item.done",
            "conversation.item.created",
        ):
            item = ev.item
            if item.id in self._replayed:
                self._acknowledged(item.id)
                return None
            if t == "conversation.item.added" and _is_caller_audio(item):
                self._caller_item(item.id)
        elif t == "input_audio_buffer.speech_started":
            self._marker += 1
            self._speaking = True
            await self._barge_in()
        elif t in ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"):
            self._speaking = False
        elif t == "conversation.item.input_audio_transcription.delta":
            text = self._partials.get(ev.item_id, "") + (ev.delta or "")
            self._partials[ev.item_id] = text
            s.user_partial(text)
        elif t == "conversation.item.input_audio_transcription.completed":
            self._partials.pop(ev.item_id, None)
            self._speaking = False
            self._caller_said(ev.item_id, ev.transcript)
        elif t == "conversation.item.input_audio_transcription.failed":
            self._give_up(ev.item_id)
        elif t == "response.created":
            self._active = ev.response.id
            self._pending_create = None
            self._want = None  # this response already sees everything sent before it
        elif t == "response.output_item.added" and ev.item.type == "message":
            uid = ev.item.id
            self._unfinished.append(uid)
            self._streaming.add(uid)
            self._texts[uid] = ""
            self._audio[uid] = 0
            self.item_ids[uid] = uid
            self._later(lambda: self._started(uid))
        elif t == "response.output_item.added" and ev.item.type == "function_call":
            call_id = getattr(ev.item, "call_id", None)
            if isinstance(call_id, str):
                self._calls.add(call_id)
                self.item_ids[call_id] = ev.item.id
        elif t in ("response.output_audio_transcript.delta", "response.output_text.delta"):
            uid = ev.item_id
            text = self._texts.get(uid, "") + ev.delta
            self._texts[uid] = text
            if uid in self._unfinished:
                self._later(lambda: self._progress(uid, text))
        elif t == "response.output_audio.delta":
            per = bytes_per_ms(self.config)
            self._audio[ev.item_id] = self._audio.get(ev.item_id, 0) + delta_ms(ev.delta, per)
        elif t == "response.output_item.done":
            self._streaming.discard(ev.item.id)
        elif t == "response.function_call_arguments.done":
            rid = getattr(ev, "response_id", None)
            self._call_asked(
                rid if isinstance(rid, str) else None, ev.call_id, ev.name, ev.arguments
            )
        elif t == "response.done":
            rid = getattr(ev.response, "id", None)
            if isinstance(rid, str):
                self._responded.add(rid)
            self._active = None
            self._pending_create = None
            await self._release_groups()
            await self._try_response()
        elif t == "error":
            return await self._on_error(ev)
        return ev

    def _started(self, uid: str) -> None:
        self.callstate.agent_started("", utterance_id=uid)

    def _progress(self, uid: str, text: str) -> None:
        item = self._state_item(uid)
        if item is not None and not item.done:
            self.callstate.agent_progress(uid, spoken_text=text, text=text)

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


async def _close(conn: AsyncRealtimeConnection) -> None:
    """Close a socket politely, else drop it: when nobody reads it any more (a fenced
    call) websockets pauses the transport and never sees the server's close frame."""
    try:
        await asyncio.wait_for(conn.close(), _CLOSE_WAIT)
    except Exception:  # timed out or already broken: nothing more to say on it
        transport = getattr(getattr(conn, "_connection", None), "transport", None)
        if transport is not None:
            transport.abort()


def _is_caller_audio(item: Any) -> bool:
    """A caller message carrying audio (its transcript, if any, comes separately)."""
    if getattr(item, "role", None) != "user":
        return False
    content = getattr(item, "content", None) or []
    return any(getattr(part, "type", None) == "input_audio" for part in content)
