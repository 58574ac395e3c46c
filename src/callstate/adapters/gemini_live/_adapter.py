"""GeminiLiveAdapter: a ``google.genai`` Live session with a callstate session behind it.

User code receives messages as from ``session.receive()`` and sends with the same
``send_client_content`` / ``send_realtime_input`` methods; the adapter sees every
message on the way and keeps the callstate session true to the call (see the package
docstring for what it does with each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from google import genai
from google.genai import errors, types
from websockets.exceptions import ConnectionClosed, WebSocketException

from ...continuity.plan import plan
from ...errors import CallstateError
from ...session import Session
from .._fenced import Fence
from .._heard import heard_text
from .._held import open_link
from ._replay import replay_turns, window_tokens
from ._tools import VIA, ToolAnswers

__all__ = ["HANDLE_KEY", "BadFrame", "GeminiLiveAdapter", "GeminiResumed"]

log = logging.getLogger("callstate.adapters.gemini_live")

#: the userdata key the latest session-resumption handle is journaled under
HANDLE_KEY: Final = "gemini_live.resumption_handle"
_BYTES_PER_MS = 48  # the Live API's output audio: pcm16 mono at 24 kHz
_BAD_MEMORY = 100
_CLOSE_WAIT = 2.0

Playback = Callable[[], int | None]


@dataclass(frozen=True)
class BadFrame:
    """A server frame the adapter skipped, and why (``frame`` holds its start, if known)."""

    problem: str
    frame: str = ""


@dataclass(frozen=True)
class GeminiResumed:
    """The call moved to a new Live connection (``type == "callstate.resumed"``).

    Attributes:
        reason: ``drop`` or ``go_away``.
        with_handle: the new connection continued the server's conversation from the
            last ``sessionResumptionUpdate`` handle; False: it was replayed.
        replayed: ``clientContent`` turns sent to rebuild the conversation (0 with a handle).
        close_code: the close code of a drop.
        gap_s: seconds the line was down.
    """

    reason: str
    with_handle: bool
    replayed: int = 0
    close_code: int | None = None
    gap_s: float = 0.0
    type: str = field(default="callstate.resumed", init=False)


def _closed(exc: BaseException) -> bool:
    """An ``APIError`` the SDK raised for a closed websocket (not for a bad frame)."""
    return isinstance(exc.__context__, ConnectionClosed)


class GeminiLiveAdapter(ToolAnswers):
    """An open Live session bound to a callstate ``Session``; see ``connect``."""

    def __init__(
        self,
        client: genai.Client,
        session: Session,
        *,
        model: str,
        config: types.LiveConnectConfig | dict[str, Any] | None = None,
        playback: Playback | None = None,
        run_tools: bool = True,
        reconnect_attempts: int = 5,
        reconnect_delay: float = 0.2,
    ) -> None:
        self.client = client
        self.callstate = session
        self.model = model
        if isinstance(config, dict):
            config = types.LiveConnectConfig(**config)
        self.config = config or types.LiveConnectConfig()
        self.playback = playback
        self.run_tools = run_tools
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        #: frames the adapter skipped (not JSON, not a message the SDK could build)
        self.bad_frames: deque[BadFrame] = deque(maxlen=_BAD_MEMORY)
        #: the SDK's ``AsyncSession`` for the current connection
        self.live: Any = None
        self.connections = 0
        self._stack: contextlib.AsyncExitStack | None = None
        self._iter: Any = None
        self._ready: deque[Any] = deque()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._closing = False
        self._away = False
        self._asks = 0
        self._fence = Fence(lambda: self.callstate, log, self._fenced_stop)
        self._reset()

    def _reset(self) -> None:
        """Forget what the previous connection held."""
        self._open_calls: dict[str, str] = {}  # wire id -> tool name, answerable here
        self._cancelled: set[str] = set()
        # outcomes sent on this connection that no resumable handle covers yet
        self._unconfirmed: list[str] = []
        self._uid: str | None = None
        self._text = ""
        self._audio_ms = 0
        self._heard = ""
        self._away = False

    @property
    def handle(self) -> str | None:
        """The latest resumption handle journaled for this call, if any."""
        value = self.callstate.state.userdata.get(HANDLE_KEY)
        return value if isinstance(value, str) and value else None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> GeminiLiveAdapter:
        async with self._lock:
            await self._open()
        self._unsubscribe = self.callstate.on_outcome(self._landed, owed=True)
        self._fence.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Let running tools record their outcomes, then close the connection."""
        self._closing = True
        self._fence.cancel()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stack.aclose(), _CLOSE_WAIT)
            self._stack = None

    async def _fenced_stop(self) -> None:
        """The call was taken over: stop giving outcomes, close the connection (a reader
        waiting on it wakes and yields the ``FencedEvent``)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        old, self._stack = self._stack, None
        if old is not None:
            self._spawn(self._let_go(old))

    async def _connect(self, handle: str | None) -> tuple[contextlib.AsyncExitStack, Any]:
        base = self.config.session_resumption or types.SessionResumptionConfig()
        config = self.config.model_copy(
            update={"session_resumption": base.model_copy(update={"handle": handle})}
        )
        stack = contextlib.AsyncExitStack()
        try:
            live = await stack.enter_async_context(
                self.client.aio.live.connect(model=self.model, config=config)
            )
        except BaseException:
            await stack.aclose()
            raise
        return stack, live

    async def _dial(self) -> bool:
        """Open a connection (with the journaled handle when there is one); True when the
        server resumed the conversation from it.

        Raises:
            ConnectionError: no connection could be opened in ``reconnect_attempts`` tries.
        """
        last: Exception | None = None
        attempts = max(1, self.reconnect_attempts)
        for attempt in range(attempts):
            handle = self.handle
            try:
                self._stack, self.live = await self._connect(handle)
            except errors.APIError as exc:
                last = exc
                if handle is not None:  # refused: expired or unknown; replay instead
                    log.info("callstate: the Live API refused resumption handle (%s)", exc)
                    self.callstate.remove_userdata(HANDLE_KEY)
                    continue
            except (OSError, WebSocketException) as exc:  # refused, reset, bad handshake
                last = exc
            else:
                self.connections += 1
                self._iter = None
                self._reset()
                return handle is not None
            if attempt + 1 < attempts:
                await asyncio.sleep(self.reconnect_delay * (2**attempt))
        msg = f"could not open a Gemini Live session after {attempts} attempts: {last}"
        raise ConnectionError(msg) from last

    async def _open(self, reason: str = "", close_code: int | None = None) -> None:
        """Dial, then resume by handle or replay the conversation; off hold; owed outcomes."""
        s = self.callstate
        lost_at = s.state.link_lost_at
        gap = max(0.0, s.keeper.clock.now() - lost_at) if lost_at is not None else 0.0
        with_handle = await self._dial()
        replayed = 0
        state = s.state
        if not with_handle and (state.items[state.summarized :] or state.summary):
            messages = s.context()
            note = getattr(s.recovery, "resume_note", "") if not reason else ""
            note = note or plan(state, gap_s=gap, via="resume").resume_note
            if note:
                messages.append({"role": "system", "content": note})
            turns = replay_turns(messages, max_tokens=window_tokens(self.config))
            owed = list(state.owed_to_model)  # their outputs are in the replay
            # the model speaks on only to voice a result the caller is still owed
            answer = any(self._voiced(state.calls[c], c) for c in owed if c in state.calls)
            await self.live.send_client_content(turns=turns, turn_complete=answer)
            replayed = len(turns)
            self._unconfirmed.extend(owed)
        await self._open_link()
        if reason:
            self._ready.append(
                GeminiResumed(
                    reason=reason,
                    with_handle=with_handle,
                    replayed=replayed,
                    close_code=close_code,
                    gap_s=gap,
                )
            )
        await self._sync()

    async def _open_link(self) -> None:
        """Take the session off hold and send what its outbox kept, in order.

        Entries ``{"client_content": {...}}`` and ``{"realtime_input": {...}}`` go out as
        those calls' keyword arguments. Speech held while the link was down (here, or on
        the worker the call was resumed from) was never heard: the model is asked to say
        it, in one turn.
        """
        kept, say = open_link(self.callstate)
        for entry in kept:
            if isinstance(entry, dict) and len(entry) == 1 and "client_content" in entry:
                await self.live.send_client_content(**entry["client_content"])
            elif isinstance(entry, dict) and len(entry) == 1 and "realtime_input" in entry:
                await self.live.send_realtime_input(**entry["realtime_input"])
            else:
                log.warning("callstate: an outbox entry that is no Live API call: %r", entry)
        if say is not None:
            turn = types.Content(role="user", parts=[types.Part(text=say)])
            await self.live.send_client_content(turns=[turn], turn_complete=True)

    async def _reconnect(self, reason: str, close_code: int | None = None) -> None:
        async with self._lock:
            s = self.callstate
            if not s.on_hold:
                detail = f"{reason} (close code {close_code})" if close_code else reason
                s.connection_lost(detail)
            self._caller_done()
            self._cut()
            old = self._stack
            self._stack = None
            await self._open(reason, close_code)
            if old is not None:
                self._spawn(self._let_go(old))

    async def _let_go(self, old: contextlib.AsyncExitStack) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.aclose(), _CLOSE_WAIT)

    # -- sending -----------------------------------------------------------------------

    async def send_client_content(self, **kwargs: Any) -> None:
        """``AsyncSession.send_client_content`` on the current connection (dropped once
        the session was fenced: the call goes on where the newer owner holds it)."""
        async with self._lock:
            if not self._fence.fenced:
                await self.live.send_client_content(**kwargs)

    async def send_realtime_input(self, **kwargs: Any) -> None:
        """``AsyncSession.send_realtime_input`` on the current connection (dropped once
        the session was fenced)."""
        async with self._lock:
            if not self._fence.fenced:
                await self.live.send_realtime_input(**kwargs)

    # -- receiving ---------------------------------------------------------------------

    def __aiter__(self) -> GeminiLiveAdapter:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.recv()
        except ConnectionError as exc:
            raise StopAsyncIteration from exc
        except CallstateError as exc:
            if self._fence.said:  # the FencedEvent was the last one
                raise StopAsyncIteration from exc
            raise

    async def recv(self) -> Any:
        """The next ``types.LiveServerMessage``, a ``GeminiResumed`` after a reconnect, or,
        once another keeper took the call over, one ``FencedEvent``.

        A frame the SDK cannot build a message from is skipped (logged, kept in
        ``bad_frames``); the connection stays up.

        Raises:
            ConnectionError: the adapter is closed, or no new connection could be opened.
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
            if self._away and self._uid is None and not self._closing:
                await self._reconnect("go_away")  # a quiet moment before the server goes
                continue
            if self._closing or self.live is None:
                msg = "the Gemini Live adapter is closed (use `async with connect(...)`)"
                raise ConnectionError(msg)
            if self._iter is None:
                self._iter = self.live.receive().__aiter__()
            it = self._iter
            try:
                message = await it.__anext__()
            except StopAsyncIteration:
                if it is self._iter:
                    self._iter = None  # the SDK's receive() ends at each turn: go on
                continue
            except errors.APIError as exc:
                if it is not self._iter:
                    continue  # an old connection, closed after a reconnect
                self._fence.check()  # closed because the call was taken over
                if _closed(exc) and not self._closing:
                    await self._reconnect("drop", close_code=exc.code)
                    continue
                if self._closing:
                    raise ConnectionError(str(exc)) from exc
                self._skip(f"error frame: {exc}")
                continue
            except (ValueError, TypeError, RecursionError) as exc:  # pydantic errors too
                self._skip(f"{type(exc).__name__}: {exc}")
                continue
            if it is not self._iter:
                continue
            self._on_message(message)
            return message

    def _skip(self, problem: str) -> None:
        self._iter = None  # the SDK's generator ended with the error; the socket did not
        bad = BadFrame(problem=problem[:200])
        self.bad_frames.append(bad)
        log.warning("callstate skipped a Gemini Live server frame: %s", bad.problem)

    def _on_message(self, msg: types.LiveServerMessage) -> None:
        s = self.callstate
        sc = msg.server_content
        if sc is not None:
            if sc.input_transcription is not None and sc.input_transcription.text:
                self._heard += sc.input_transcription.text
                s.user_partial(self._heard.strip())
                if sc.input_transcription.finished:
                    self._caller_done()
            if sc.interrupted:
                self._barge_in()
            parts = sc.model_turn.parts if sc.model_turn is not None else None
            said = sc.output_transcription.text if sc.output_transcription is not None else None
            if parts or said:
                self._model_output(parts or [], said or "")
            if sc.turn_complete:
                self._caller_done()
                self._finish()
        if msg.tool_call is not None:
            self._caller_done()
            for fc in msg.tool_call.function_calls or []:
                self._call_asked(fc)
        if msg.tool_call_cancellation is not None:
            self._cancelled.update(msg.tool_call_cancellation.ids or [])
        update = msg.session_resumption_update
        fresh = update is not None and update.resumable and update.new_handle
        if update is not None and fresh and update.new_handle != self.handle:
            # the state this handle resumes holds what was sent before it: given for good
            for call_id in self._unconfirmed:
                s.given_to_model(call_id, via=VIA)
            self._unconfirmed.clear()
            s.update_userdata({HANDLE_KEY: update.new_handle})
        if msg.go_away is not None:
            self._away = True

    # -- the transcript ------------------------------------------------------------------

    def _caller_done(self) -> None:
        text, self._heard = self._heard.strip(), ""
        if text:
            self.callstate.user_said(text)

    def _model_output(self, parts: list[types.Part], said: str) -> None:
        self._caller_done()
        s = self.callstate
        if self._uid is None:
            self._asks += 1
            self._uid = s.agent_started("", utterance_id=f"gl{self.connections}.{self._asks}")
            self._text, self._audio_ms = "", 0
        for part in parts:
            if part.inline_data is not None and part.inline_data.data:
                self._audio_ms += len(part.inline_data.data) // _BYTES_PER_MS
            if part.text and not part.thought:
                said += part.text
        if said:
            self._text += said
            s.agent_progress(self._uid, spoken_text=self._text, text=self._text)

    def _played(self) -> str:
        """What the caller heard of the open utterance: from ``playback``, else all of it."""
        played = self.playback() if self.playback is not None else None
        if played is None:
            return self._text
        return heard_text(self._text, played, self._audio_ms)

    def _barge_in(self) -> None:
        uid, self._uid = self._uid, None
        played = self.playback() if self.playback is not None and uid is not None else None
        heard = self._played() if uid is not None else None
        self.callstate.interrupt(heard_text=heard, audio_end_ms=played, utterance_id=uid)

    def _finish(self) -> None:
        uid, self._uid = self._uid, None
        if uid is not None:
            self.callstate.agent_finished(uid)

    def _cut(self) -> None:
        """The line dropped mid-utterance: it ends where the caller stopped hearing it."""
        uid, self._uid = self._uid, None
        if uid is None:
            return
        heard = self._played()
        self.callstate.agent_progress(uid, spoken_text=heard, text=self._text)
        self.callstate.agent_finished(uid, text=heard)
