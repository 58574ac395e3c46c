"""A realtime model's own conversation, kept in line with what callstate decided.

With a ``RealtimeModel`` (``livekit-plugins-openai`` ``realtime.RealtimeModel``,
``livekit-plugins-google`` ``realtime.RealtimeModel``) LiveKit runs no ``llm_node``: the
provider keeps the conversation (``RealtimeSession.chat_ctx``) and answers from it. So
what callstate writes into a cascaded turn's context is written into that conversation
instead (``RealtimeSession.update_chat_ctx``), before every ``generate_reply`` (the
realtime session's method is wrapped on the instance) and as soon as the caller's turn
is recorded (a reply the server starts itself finds it there on the next turn):

- the notes on held results the reconciler decided and on owed outcomes
  (``LiveKitRecovery.write_notes``), with the outputs still saying "held" replaced;
- a cut reply's message holding only what the caller heard (LiveKit truncates it to
  the text handed to the output, which includes the chunk under way at the barge-in),
  or removed when nothing was heard.

Gemini Live takes no system turns and can neither change nor remove one (the plugin
drops ``system`` messages and logs updates away): there the notes go in as ``user``
turns marked as notes, and a cut reply is followed by a note saying what was heard.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentSession, llm, utils

__all__ = ["RealtimeContext", "keeps_system_turns", "seed_for", "system_as_user"]

log = logging.getLogger("callstate.adapters.livekit")

NOTE = "[note for the assistant, not said by the caller] "


def keeps_system_turns(model: Any) -> bool:
    """Whether a realtime model (or its session) keeps ``system`` messages of the
    conversation: Gemini Live's plugin drops them."""
    return not type(model).__module__.startswith("livekit.plugins.google")


def seed_for(ctx: llm.ChatContext, model: Any) -> llm.ChatContext:
    """``ctx`` as the agent on ``model`` is to be seeded with: for a model that drops system
    messages (Gemini Live), a copy with the notes (the resume or handoff note) and the
    earlier function calls with their outcomes as marked user turns."""
    if model is None or keeps_system_turns(model):
        return ctx
    out = llm.ChatContext([i.model_copy(deep=True) for i in ctx.items])
    _calls_as_notes(out, keep=set())
    system_as_user(out)
    return out


def _calls_as_notes(ctx: llm.ChatContext, *, keep: set[str]) -> None:
    """Each function call and output of ``ctx`` whose id is not in ``keep`` becomes a note."""
    calls: dict[str, llm.FunctionCall] = {}
    items: list[llm.ChatItem] = []
    for item in ctx.items:
        if item.id in keep or not isinstance(item, llm.FunctionCall | llm.FunctionCallOutput):
            items.append(item)
        elif isinstance(item, llm.FunctionCall):
            calls[item.call_id] = item
        else:
            items.append(_call_note(calls.get(item.call_id), item))
    ctx.items[:] = items


def _call_note(call: llm.FunctionCall | None, output: llm.FunctionCallOutput) -> llm.ChatMessage:
    """An earlier call as a note: a new Gemini Live session takes no calls it did not ask
    for (the plugin leaves them out of the replayed turns, and with them the outcome)."""
    name = call.name if call is not None else output.name
    args = call.arguments if call is not None else "{}"
    text = f"{name} (call {output.call_id}) ran earlier with {args}: {output.output}"
    return llm.ChatMessage(
        role="system", content=[text], id=output.id, created_at=output.created_at
    )


def system_as_user(ctx: llm.ChatContext) -> None:
    """Turn ``system``/``developer`` messages (not the instructions) into marked user notes."""
    for item in ctx.items:
        # LiveKit's own instructions message goes as the system instruction
        if (
            isinstance(item, llm.ChatMessage)
            and item.role in ("system", "developer")
            and item.id != "instructions"
        ):
            item.role = "user"
            item.content = [NOTE + (item.text_content or "")]


def _heard_note(heard: str) -> str:
    said = f'only "{heard}"' if heard else "none of it"
    return f"You were interrupted: the caller heard {said} of your last reply."


class RealtimeContext:
    """Writes callstate's decisions into the realtime session of ``agent_session``.

    Args:
        agent_session: the LiveKit session (its current agent's realtime session is used).
        write_notes: writes what the model must be told into a context
            (``LiveKitRecovery.write_notes``).
    """

    def __init__(
        self,
        agent_session: AgentSession[Any],
        write_notes: Callable[[llm.ChatContext], None],
    ) -> None:
        self._agent_session = agent_session
        self._write_notes = write_notes
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wrapped: weakref.WeakSet[Any] = weakref.WeakSet()
        self._rt: llm.RealtimeSession[Any] | None = None
        self._lock = asyncio.Lock()
        #: message id -> the cut assistant message LiveKit stored (callstate kept it to
        #: what was heard, or dropped it); the realtime conversation is made to match
        self._cuts: dict[str, llm.ChatMessage] = {}
        self._told_cut: set[str] = set()
        for event in ("speech_created", "agent_state_changed"):
            agent_session.on(event, lambda _ev: self.bind())
        agent_session.on("conversation_item_added", self._on_item)
        agent_session.on("close", lambda _ev: self._stop())

    def bind(self) -> llm.RealtimeSession[Any] | None:
        """The current agent's realtime session, its ``generate_reply`` wrapped (once)."""
        try:
            rt = self._agent_session.current_agent.realtime_llm_session
        except RuntimeError:  # not started, or not on a RealtimeModel
            return None
        self._rt = rt
        if rt not in self._wrapped:
            self._wrapped.add(rt)
            self._wrap(rt)
        return rt

    def _on_item(self, ev: Any) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or self.bind() is None:
            return
        if item.role == "assistant" and item.interrupted:
            self._cuts[item.id] = item  # the recovery's handler ran first: heard text set
        if item.role in ("user", "assistant"):  # a caller's turn: decisions may follow it
            self.sync()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stop(self) -> None:
        for task in list(self._tasks):  # the session closed: nothing more to tell it
            task.cancel()

    def sync(self) -> None:
        """Bring the realtime conversation in line now (in the background)."""
        rt = self._rt
        if rt is not None:
            self._spawn(self._push(rt))

    def _wrap(self, rt: llm.RealtimeSession[Any]) -> None:
        inner = rt.generate_reply  # bound to the session

        def generate_reply(**kw: Any) -> asyncio.Future[llm.GenerationCreatedEvent]:
            out: asyncio.Future[llm.GenerationCreatedEvent] = (
                asyncio.get_running_loop().create_future()
            )

            async def run() -> None:
                await self._push(rt)  # the notes go in before the model answers
                if out.done():  # cancelled meanwhile: the turn was interrupted
                    return
                fut = inner(**kw)
                out.add_done_callback(lambda o: fut.cancel() if o.cancelled() else None)
                fut.add_done_callback(lambda f: _relay(f, out))

            self._spawn(run())
            return out

        rt.generate_reply = generate_reply  # type: ignore[method-assign]

    async def _push(self, rt: llm.RealtimeSession[Any]) -> None:
        async with self._lock:
            try:
                await self._update(rt)
            except llm.RealtimeError as exc:  # best effort, as LiveKit's own updates
                log.warning("callstate could not update the realtime conversation: %s", exc)

    async def _update(self, rt: llm.RealtimeSession[Any]) -> None:
        remote = rt.chat_ctx
        ctx = llm.ChatContext([i.model_copy(deep=True) for i in remote.items])
        before = ctx.to_dict(exclude_timestamp=True)
        self._write_notes(ctx)
        _renew_changed_outputs(remote, ctx)
        if keeps_system_turns(rt):
            self._keep_heard(ctx)
        else:  # a call Gemini did not ask for cannot be answered: it goes as a note
            _calls_as_notes(ctx, keep={i.id for i in remote.items})
            self._note_heard(ctx)
            system_as_user(ctx)
        if ctx.to_dict(exclude_timestamp=True) != before:
            await rt.update_chat_ctx(ctx)

    def _stored(self, message_id: str) -> bool:
        try:
            agent = self._agent_session.current_agent
        except RuntimeError:
            return False
        return agent.chat_ctx.get_by_id(message_id) is not None

    def _keep_heard(self, ctx: llm.ChatContext) -> None:
        """A cut reply holds only what was heard (nothing heard: it goes)."""
        for message_id, msg in list(self._cuts.items()):
            idx = ctx.index_by_id(message_id)
            if idx is None:
                continue  # not in the remote conversation yet: next time
            del self._cuts[message_id]
            if not self._stored(message_id):
                del ctx.items[idx]
            else:
                item = ctx.items[idx]
                if isinstance(item, llm.ChatMessage) and item.content != msg.content:
                    item.content = list(msg.content)

    def _note_heard(self, ctx: llm.ChatContext) -> None:
        """The provider cannot change its turns: a note says what of a cut reply was heard."""
        for message_id, msg in list(self._cuts.items()):
            del self._cuts[message_id]
            if message_id in self._told_cut:
                continue
            self._told_cut.add(message_id)
            heard = (msg.text_content or "") if self._stored(message_id) else ""
            ctx.add_message(role="system", content=_heard_note(heard.strip()))


def _renew_changed_outputs(remote: llm.ChatContext, ctx: llm.ChatContext) -> None:
    """An output whose text changed gets a new id: LiveKit's diff updates messages only,
    so the old item is deleted and the new one created in its place."""
    for item in ctx.items:
        if isinstance(item, llm.FunctionCallOutput):
            was = remote.get_by_id(item.id)
            if isinstance(was, llm.FunctionCallOutput) and was.output != item.output:
                item.id = utils.shortuuid("item_")


def _relay(src: asyncio.Future[Any], dst: asyncio.Future[Any]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.cancel()
    elif (exc := src.exception()) is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())
