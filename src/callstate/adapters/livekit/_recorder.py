"""LiveKitRecovery: what one LiveKit ``AgentSession`` feeds into a callstate ``Session``.

Hooks (livekit-agents 1.8), each recording in the order LiveKit acts:

- session events: ``conversation_item_added`` (user turns as committed, assistant
  messages as stored: truncated with ``interrupted=True`` after a barge-in, and
  ``AgentHandoff`` items, emitted before the new agent's activity starts),
  ``user_input_transcribed`` (interim transcripts), ``speech_created`` (each speech
  handle, watched for its interruption), ``function_tools_executed`` and
  ``tool_execution_updated`` (plain function tool calls, see ``_plain.py``, and deferred
  replies), ``agent_state_changed``, ``user_state_changed`` and ``close``;
- a ``TextOutput`` placed first in ``session.output.transcription``: what reaches the
  output is what the caller heard (text arrives there as it is released; with audio
  and TTS-aligned transcripts, as it plays);
- an ``AudioOutput`` placed first in ``session.output.audio`` (``_playout.py``): when
  the agent speaks through audio, what was heard is the audio that played;
- each agent's ``llm_node``, wrapped on the instance: the final user turn is recorded
  before inference (LiveKit emits it only once the reply is scheduled), notes on held
  results the reconciler decided are written into the turn's context, and the text
  the model generates is kept as the utterance's full text;
- a speech handle's interruption future (``SpeechHandle._interrupt_fut``; the public
  API has no interruption callback): a barge-in is recorded the moment LiveKit takes
  it, before the tools it overtakes finish, so their results are held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.voice.agent_activity import _SpeechHandleContextVar
from livekit.agents.voice.events import (
    AgentStateChangedEvent,
    CloseEvent,
    ConversationItemAddedEvent,
    EventTypes,
    FunctionToolsExecutedEvent,
    SpeechCreatedEvent,
    ToolCallEnded,
    ToolCallStarted,
    ToolExecutionUpdatedEvent,
    ToolReplyUpdated,
    UserInputTranscribedEvent,
)
from livekit.agents.voice.speech_handle import SpeechHandle

from ...errors import CallstateError, StaleEpochError
from ...session import Session
from ...tools.registry import ToolOutcome
from ._context import AgentFactory, chat_context, handoff_messages
from ._fence import Fence, FencedCallback
from ._hooks import (
    Tap,
    current_speech,
    heard_of,
    keep_heard,
    record_userdata,
    stop_held_reply,
    userdata_changes,
    wrap_llm_node,
    write_notes,
)
from ._link import link_up
from ._owed import OwedOutcomes
from ._plain import PlainCalls, handoff_needs_secret
from ._playout import Playout
from ._refused import journal_refused

__all__ = ["LiveKitRecovery"]

log = logging.getLogger("callstate.adapters.livekit")


class LiveKitRecovery:
    """Records a LiveKit ``AgentSession`` into a callstate session. Create with ``attach``.

    Attributes:
        session: the callstate session currently recorded into (a new handle after a
            handoff is accepted).
        errors: callstate errors raised while recording (a frozen handle), kept here
            instead of breaking LiveKit's event loop. Once the session is fenced (another
            worker took the call) nothing more is recorded: ``on_fenced`` says so, once.
    """

    def __init__(
        self,
        agent_session: AgentSession[Any],
        session: Session,
        *,
        agents: Mapping[str, AgentFactory] | None = None,
        end_on_close: bool = True,
    ) -> None:
        handoff_needs_secret(session, agents or {})
        self.agent_session = agent_session
        self.session = session
        self.agents = dict(agents or {})
        self.errors: list[CallstateError] = []
        self._end_on_close = end_on_close
        self._uid: str | None = None  # the agent utterance under way
        self._cut = False  # that utterance was cut by a barge-in
        self._heard = ""
        self._generated = ""
        self._speech: str | None = None  # the speech handle that utterance belongs to
        self._ahead: dict[str, str] = {}  # speech id -> text generated before it plays
        self._known: set[str] = set()  # chat item ids already recorded (or seeded)
        self._noted = {  # decided deliveries the model was told (a held one: later)
            c.call_id for c in session.state.calls.values() if c.delivery not in (None, "held")
        }
        self._wrapped: weakref.WeakSet[Agent] = weakref.WeakSet()
        self._ready: asyncio.Future[None] | None = None  # a handoff being accepted
        self._deferred: list[Callable[[], Any]] = []
        self._userdata: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._speeches: dict[str, SpeechHandle] = {}  # speech id -> handle, until done
        self._linked = False  # the session left hold once the agent session ran
        self._muted: set[str] = set()  # speech ids this adapter interrupted itself
        #: deferred replies stopped because they would voice a held result
        self.suppressed: list[str] = []
        self._plain = PlainCalls(agent_session, lambda: self.session, self._rec, lambda: self._uid)
        self._latest: Agent | None = None  # the agent wrapped last (before start: restored)
        self._ran: set[str] = set()  # calls of this session's guarded tools
        self._owed = OwedOutcomes(
            lambda: self.session,
            self._live_contexts,
            lambda call_id: call_id in self._ran or self._plain.recorded(call_id),
            agent_session,
            self._noted,
        )
        self._owed.follow(session)
        self._fence = Fence(lambda: self.session, self._moving, self._owed.stop)
        self._fence.follow()
        self._playout = Playout(self._cut_heard)  # with audio, heard is what played
        hooks: list[tuple[EventTypes, Callable[[Any], None]]] = [
            ("conversation_item_added", self._on_item),
            ("user_input_transcribed", self._on_transcript),
            ("speech_created", self._on_speech),
            ("function_tools_executed", self._on_tools_executed),
            ("tool_execution_updated", self._on_tool_update),
            ("agent_state_changed", self._on_state),
            ("user_state_changed", lambda _ev: self._owed.state_changed()),
            ("close", self._on_close),
        ]
        for event, handler in hooks:
            agent_session.on(event, handler)
        self._mark_known(agent_session.history.items)
        with contextlib.suppress(RuntimeError):  # attached after start: wrap the agent now
            self._wrap(agent_session.current_agent)
            self._link_up()
        self._ensure_tap()

    # -- the guard -------------------------------------------------------------------------

    async def run_tool(
        self,
        name: str,
        args: dict[str, Any] | str,
        *,
        call_id: str,
        offered: Collection[str] | None = None,
    ) -> ToolOutcome:
        """Run a registered tool through the guard on the current callstate session."""
        await self._wait_ready()
        msg = "another worker took this call over; this agent session must stop"
        self._ran.add(call_id)  # LiveKit gives the model this call's output
        try:
            if not self._fence.check():
                return await self.session.run_tool(name, args, call_id=call_id, offered=offered)
        except StaleEpochError:
            self._fence.check()  # learnt just now: said once
        raise llm.ToolError(msg)  # LiveKit answers the model with it, once per call

    def on_fenced(self, callback: FencedCallback) -> Callable[[], None]:
        """``callback(session, error)`` once fenced (close the AgentSession); unsubscribes."""
        return self._fence.on_fenced(callback)

    # -- plumbing --------------------------------------------------------------------------

    def _moving(self) -> bool:
        return self._ready is not None and not self._ready.done()

    async def _wait_ready(self) -> None:
        if self._ready is not None:
            await asyncio.shield(self._ready)

    def _rec(self, fn: Callable[[], Any]) -> None:
        """Record now, or once a pending handoff is accepted; keep errors, never raise."""
        if self._moving():
            self._deferred.append(fn)
            return
        if self._fence.check():
            return  # taken over: said once, nothing more is recorded
        try:
            fn()
        except StaleEpochError:
            self._fence.check()  # learnt just now: say so once
        except CallstateError as exc:
            log.warning("callstate could not record: %s", exc)
            self.errors.append(exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _mark_known(self, items: Iterable[llm.ChatItem]) -> None:
        self._known.update(item.id for item in items)

    def seeded(
        self, items: Iterable[llm.ChatItem], *, userdata: dict[str, Any], agent: Agent | None = None
    ) -> None:
        """Note a context seeded from the session: its items are already recorded,
        ``userdata`` is the app state the session holds (changes are recorded from it),
        and ``agent`` the agent it was given to (outcomes landing before it starts go
        into its context)."""
        self._mark_known(items)
        self._userdata = dict(userdata)
        if agent is not None:
            self._wrap(agent)

    def _ensure_tap(self) -> None:
        out = self.agent_session.output
        if not isinstance(out.transcription, Tap):
            out.transcription = Tap(self._wait_ready, self._heard_text, out.transcription)
        self._playout.ensure(out)

    # -- agent utterances ------------------------------------------------------------------

    def _start(self, speech: str | None) -> str:
        if self._uid is not None and speech is not None and speech != self._speech:
            if not self._cut:  # another speech began: what this one got out is all of it
                self.session.agent_finished(self._uid, text=self._heard.strip())
            self._reset()
        if self._cut:  # the cut utterance never got a message: nothing of it played
            self._reset()
        if self._uid is None:
            self._uid = self.session.agent_started("")
            self._speech = speech
            ahead = self._ahead.pop(speech, "") if speech is not None else ""
            if ahead.strip():
                self._generated = ahead
                self.session.agent_progress(self._uid, spoken_text="", text=ahead.strip())
        return self._uid

    def _spoken(self) -> str:
        # text sent to be spoken through audio is heard only as far as it plays
        return "" if self._playout.active else self._heard.strip()

    def _reset(self) -> None:
        self._uid, self._cut, self._heard, self._generated = None, False, "", ""
        self._speech = None

    def _heard_text(self, text: str) -> None:
        speech = current_speech()

        def record() -> None:
            uid = self._start(speech)
            self._heard += text
            full = self._generated if len(self._generated) >= len(self._heard) else self._heard
            self.session.agent_progress(uid, spoken_text=self._spoken(), text=full.strip())

        if not self._cut:
            self._rec(record)

    def _generated_text(self, text: str) -> None:
        handle = _SpeechHandleContextVar.get(None)
        if handle is not None and handle.interrupted:
            return  # generated after a barge-in: none of it will be spoken
        speech = handle.id if handle is not None else None

        def record() -> None:
            if self._uid is not None and not self._cut and self._speech not in (None, speech):
                self._ahead[str(speech)] = text  # generated while another speech plays
                return
            uid = self._start(speech)
            self._generated = text
            self.session.agent_progress(uid, spoken_text=self._spoken(), text=text.strip())

        if text.strip():
            self._rec(record)

    def _assistant(self, msg: llm.ChatMessage, speech: str | None) -> None:
        text = (msg.text_content or "").strip()
        if self._cut and (speech is None or speech == self._speech):
            self._playout.settle(text)  # LiveKit stores it after playback stopped
            heard = heard_of(self.session.state, self._uid)
            self._reset()  # recorded at the barge-in, with what had reached the output
            if heard != text:
                keep_heard(msg, heard, self._contexts())
        elif self._uid is not None or text:
            uid = self._start(speech)
            if msg.interrupted:
                self.session.interrupt(heard_text=text, utterance_id=uid)
            else:
                self.session.agent_finished(uid, text=text)
            self._reset()
        if self._uid is None and self._ahead:  # generated while this one played: next
            self._start(next(iter(self._ahead)))

    def _contexts(self) -> list[llm.ChatContext]:
        """LiveKit's stored contexts: each agent's (what its next turn starts from) and
        the session's history (the app's record of the call)."""
        return [*(a._chat_ctx for a in self._wrapped), self.agent_session.history]

    def _on_interrupt(self, speech_id: str) -> None:
        """LiveKit took a barge-in: truncate to what was heard, overtake running calls."""
        muted = speech_id in self._muted  # a deferred reply stopped here, not a barge-in

        def record() -> None:
            mine = self._uid is not None and not self._cut and self._speech in (None, speech_id)
            if muted:
                if mine and self._uid is not None:  # its generation, unheard
                    self.session.agent_finished(self._uid, text=self._heard.strip())
                    self._cut = True
                return
            if mine and self._uid is not None and self._playout.active:
                self._playout.cut(speech_id, self._uid, self._heard)  # when playback stops
                self._cut = True
            elif mine and self._uid is not None:
                self.session.interrupt(heard_text=self._heard.strip(), utterance_id=self._uid)
                self._cut = True
            elif self.session.state.in_flight:
                self.session.interrupt()

        self._rec(record)

    def _cut_heard(self, uid: str, heard: str, audio_end_ms: int | None) -> None:
        def record() -> None:
            self.session.interrupt(heard_text=heard, audio_end_ms=audio_end_ms, utterance_id=uid)

        self._rec(record)

    # -- the caller ------------------------------------------------------------------------

    def _user(self, msg: llm.ChatMessage) -> None:
        if msg.id in self._known:
            return
        self._known.add(msg.id)
        text = (msg.text_content or "").strip()
        if text:
            self._rec(lambda: self.session.user_said(text))

    # -- the agents' llm_node --------------------------------------------------------------

    def _wrap(self, agent: Agent) -> None:
        if agent in self._wrapped:
            return
        self._wrapped.add(agent)
        self._latest = agent
        wrap_llm_node(agent, self._before_inference, self._generated_text)

    async def _before_inference(self, chat_ctx: llm.ChatContext) -> None:
        await self._wait_ready()
        users = [i for i in chat_ctx.items if isinstance(i, llm.ChatMessage)]
        users = [m for m in users if m.role == "user"]
        if users:
            self._user(users[-1])  # LiveKit emits it only once this reply is scheduled
        self._rec(lambda: self.write_notes(chat_ctx))

    def write_notes(self, chat_ctx: llm.ChatContext) -> None:
        """Write into ``chat_ctx`` what the model must be told before it answers next."""
        write_notes(self.session.state, self._noted, chat_ctx, self._contexts())
        self._owed.write_notes(chat_ctx)

    def _live_contexts(self) -> list[llm.ChatContext]:
        agent = self._latest
        with contextlib.suppress(RuntimeError):  # not started
            agent = self.agent_session.current_agent
        return [*([agent._chat_ctx] if agent is not None else []), self.agent_session.history]

    # -- handoff ---------------------------------------------------------------------------

    def _handoff(self, item: llm.AgentHandoff) -> None:
        new = self.agent_session.current_agent
        self._wrap(new)
        if item.old_agent_id is None or new.id == self.session.state.agent:
            return
        self._sync_userdata()
        seeded = chat_context(handoff_messages(self.session))
        self._mark_known(seeded.items)
        # the new activity has not started: set the context as update_chat_ctx does, but
        # keep calls of tools this agent lacks (exclude_invalid_function_calls=False)
        new._chat_ctx = seeded
        self._ready = asyncio.get_running_loop().create_future()
        self._spawn(self._transfer(new.id, self._ready))

    async def _transfer(self, target: str, ready: asyncio.Future[None]) -> None:
        """Offer the session to ``target`` and accept it here: epoch+1, source fenced."""
        try:
            pkg = await self.session.handoff(to=target, reason="livekit agent handoff")
            self.session = await self.session.keeper.accept(pkg.to_bytes())
            self._owed.follow(self.session)
            self._fence.follow()
        except CallstateError as exc:
            log.warning("callstate handoff to %r failed: %s", target, exc)
            self.errors.append(exc)
        finally:
            ready.set_result(None)
            self._ready = None
            deferred, self._deferred = self._deferred, []
            for fn in deferred:
                self._rec(fn)

    # -- userdata --------------------------------------------------------------------------

    def _sync_userdata(self) -> None:
        found = userdata_changes(self.agent_session, self._userdata, self.session.state.userdata)
        if found is not None:
            self._userdata, changed, gone = found
            self._rec(lambda: record_userdata(self.session, changed, gone))

    # -- session events --------------------------------------------------------------------

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if isinstance(item, llm.AgentHandoff):
            self._handoff(item)
        elif isinstance(item, llm.ChatMessage) and item.role == "user":
            self._user(item)
        elif isinstance(item, llm.ChatMessage) and item.role == "assistant":
            speech = current_speech()
            self._rec(lambda: self._assistant(item, speech))
        self._sync_userdata()

    def _on_transcript(self, ev: UserInputTranscribedEvent) -> None:
        if not ev.is_final and ev.transcript.strip():
            self._rec(lambda: self.session.user_partial(ev.transcript))

    def _on_speech(self, ev: SpeechCreatedEvent) -> None:
        self._ensure_tap()  # RoomIO may have replaced the chain at start
        handle: SpeechHandle = ev.speech_handle
        self._speeches[handle.id] = handle
        handle.add_done_callback(self._speech_done)
        fut = getattr(handle, "_interrupt_fut", None)
        if isinstance(fut, asyncio.Future):
            fut.add_done_callback(lambda _f: self._on_interrupt(handle.id))

    def _speech_done(self, handle: SpeechHandle) -> None:
        self._speeches.pop(handle.id, None)
        self._ahead.pop(handle.id, None)

    def _on_tools_executed(self, ev: FunctionToolsExecutedEvent) -> None:
        refused = self._plain.refuse_unsigned_handoff(ev)  # before LiveKit switches agents
        if refused is not None:
            log.error("callstate refused a LiveKit handoff: %s", refused)
            self.errors.append(refused)
        self._plain.executed(ev)
        self._sync_userdata()
        agent = self.agent_session.current_agent
        self._spawn(journal_refused(ev, agent, lambda: self.session, self.run_tool))

    def _on_tool_update(self, ev: ToolExecutionUpdatedEvent) -> None:
        self._sync_userdata()  # a tool may have changed userdata
        update = ev.update
        if isinstance(update, ToolCallStarted):
            self._plain.started(update.function_call)
        elif isinstance(update, ToolCallEnded):
            self._plain.ended(update)
        elif isinstance(update, ToolReplyUpdated) and update.status == "scheduled":
            handle = self._speeches.get(update.speech_id)
            if stop_held_reply(self.session.state, update.update_ids, handle):
                self._muted.add(update.speech_id)  # stopped here: no barge-in
                self.suppressed.append(update.speech_id)

    def _on_state(self, ev: AgentStateChangedEvent) -> None:
        self._link_up()
        self._sync_userdata()
        self._owed.state_changed()

    def _link_up(self) -> None:
        """The agent session is running: its room link is open, so the session leaves
        hold (once; a later drop is the app's ``connection_lost`` to report)."""
        if not self._linked:
            self._linked = True
            self._rec(lambda: link_up(self.agent_session, self.session))
            self._rec(self._owed.voice_held)  # results held for the caller, never heard

    def _on_close(self, ev: CloseEvent) -> None:
        self._sync_userdata()
        self._owed.stop()
        self._fence.stop()
        if self._end_on_close and not self._fence.check():
            self._spawn(self._end(str(ev.reason.value)))

    async def _end(self, reason: str) -> None:
        await self._wait_ready()
        try:
            await self.session.end(reason=reason)
        except CallstateError as exc:
            self.errors.append(exc)

    async def wait_idle(self) -> None:
        """Wait for handoffs being accepted and the end of the call to be recorded."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
