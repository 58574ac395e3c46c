"""The small pieces ``LiveKitRecovery`` plugs into LiveKit with.

A ``TextOutput`` placed first in the transcription chain (what reaches the output is
what the caller heard), the speech whose task is running (LiveKit keeps it in a context
variable for every speech task, so text, messages and interruptions can be told apart
by speech), the wrapped ``llm_node``, userdata as plain data, and what the model is
told once a held result is decided (a note, and outputs no longer saying "held").
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.voice import io
from livekit.agents.voice.agent_activity import _SpeechHandleContextVar
from livekit.agents.voice.speech_handle import SpeechHandle

from ...journal.context import call_output
from ...journal.state import SessionState, ToolCall
from ...session import Session

__all__ = [
    "Tap",
    "call_items",
    "current_speech",
    "delivery_note",
    "drop_item",
    "heard_of",
    "held_in_reply",
    "keep_heard",
    "plain_userdata",
    "record_userdata",
    "replace_held_outputs",
    "stop_held_reply",
    "userdata_changes",
    "userdata_diff",
    "wrap_llm_node",
    "write_notes",
]


def delivery_note(call: ToolCall) -> str:
    """A system note telling the model what to do with a result whose delivery was decided."""
    return (
        f"The caller interrupted while {call.name} (call {call.call_id}) ran and has not "
        f"heard how it ended: {call_output(call)}"
    )


class Tap(io.TextOutput):
    """First in the transcription chain: records what reaches the output as heard."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[None]],
        heard: Callable[[str], None],
        next_in_chain: io.TextOutput | None,
    ) -> None:
        super().__init__(label="callstate", next_in_chain=next_in_chain)
        self._ready = ready  # waits out a handoff under way
        self._heard = heard  # records text the caller heard

    async def capture_text(self, text: str) -> None:
        if self.next_in_chain is not None:
            await self.next_in_chain.capture_text(text)  # heard once the output took it
        await self._ready()
        self._heard(text)

    def flush(self) -> None:
        if self.next_in_chain is not None:
            self.next_in_chain.flush()


def current_speech() -> str | None:
    """The id of the speech whose task is running (LiveKit sets it for each speech task)."""
    handle = _SpeechHandleContextVar.get(None)
    return handle.id if handle is not None else None


def plain_userdata(value: Any) -> dict[str, Any] | None:
    """LiveKit userdata as a dict (a dict, a dataclass or a pydantic model), else None."""
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        out = dump()
        return out if isinstance(out, dict) else None
    return None


def userdata_diff(
    before: Mapping[str, Any], data: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The keys of ``data`` that are new or changed since ``before``, and those gone."""
    changed = {k: v for k, v in data.items() if k not in before or before[k] != v}
    return changed, [k for k in before if k not in data]


def userdata_changes(
    agent_session: AgentSession[Any], seen: dict[str, Any] | None, stored: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[str]] | None:
    """LiveKit's userdata if it changed since ``seen`` (else None): ``(data, changed,
    gone)``, against ``stored`` (the session's) when nothing was seen yet."""
    try:
        value = agent_session.userdata
    except ValueError:  # no userdata set
        return None
    data = plain_userdata(value)
    if data is None or data == seen:
        return None
    changed, gone = userdata_diff(seen if seen is not None else stored, data)
    return dict(data), changed, gone


def record_userdata(session: Session, changed: dict[str, Any], gone: list[str]) -> None:
    """Record what ``userdata_changes`` found."""
    if changed:
        session.update_userdata(changed)
    if gone:
        session.remove_userdata(*gone)


def call_items(call: ToolCall) -> list[llm.ChatItem]:
    """A callstate call as LiveKit's function call and output items."""
    args = json.dumps(call.args, separators=(",", ":"), default=str)
    return [
        llm.FunctionCall(call_id=call.call_id, name=call.name, arguments=args),
        llm.FunctionCallOutput(
            call_id=call.call_id,
            name=call.name,
            output=call_output(call),
            is_error=call.status == "failed",
        ),
    ]


def drop_item(item: llm.ChatItem, contexts: Iterable[llm.ChatContext]) -> None:
    """Remove ``item`` itself (not an equal one) from each of ``contexts``."""
    for ctx in contexts:
        ctx.items[:] = [i for i in ctx.items if i is not item]


def heard_of(state: SessionState, uid: str | None) -> str:
    """What the caller heard of utterance ``uid``, as recorded."""
    item = next((i for i in reversed(state.items) if i.id == uid), None)
    return item.text if item is not None else ""


def keep_heard(msg: llm.ChatMessage, heard: str, contexts: Iterable[llm.ChatContext]) -> None:
    """Make LiveKit's stored message of a cut reply hold only what the caller heard.

    Text-only, LiveKit stores the chunk being handed to the output at the barge-in
    as said; callstate knows what the output took. Nothing heard: no message.
    """
    if heard:
        msg.content = [heard]  # one object, shared by the agent's context and history
    else:
        drop_item(msg, contexts)


def replace_held_outputs(call: ToolCall, contexts: Iterable[llm.ChatContext]) -> None:
    """Once a held result's delivery is decided, its outputs stop telling the model to wait.

    LiveKit keeps the output the guarded tool returned while the result was held (also
    as ``<call_id>_final`` for a deferred one); it now says what was decided instead.
    """
    ids = (call.call_id, f"{call.call_id}_final")
    now = call_output(call)
    for ctx in contexts:
        for item in ctx.items:
            if (
                isinstance(item, llm.FunctionCallOutput)
                and item.call_id in ids
                and '"delivery":"held"' in str(item.output)
            ):
                item.output = now


def write_notes(
    state: SessionState,
    noted: set[str],
    chat_ctx: llm.ChatContext,
    stored: Iterable[llm.ChatContext],
) -> None:
    """Tell the model, before it runs, what to do with results the reconciler decided.

    A call LiveKit committed nothing of (its turn was cut by the interruption timeout
    while still speaking) is put back into this turn's context first; outputs still
    saying the result is held are replaced, here and in the ``stored`` contexts.
    ``noted`` holds the call ids already told, and gains those told now.
    """
    have = {i.call_id for i in chat_ctx.items if isinstance(i, llm.FunctionCallOutput)}
    for call in state.calls.values():
        if call.delivery in (None, "held") or call.call_id in noted:
            continue
        noted.add(call.call_id)
        if call.call_id not in have:
            chat_ctx.items.extend(call_items(call))
        replace_held_outputs(call, [chat_ctx, *stored])
        chat_ctx.add_message(role="system", content=delivery_note(call))


def held_in_reply(state: SessionState, update_ids: Iterable[str]) -> list[str]:
    """The held calls a deferred reply covering ``update_ids`` would voice."""
    calls = state.calls
    return [
        cid
        for uid in update_ids
        if (cid := uid.removesuffix("_final").split("_update_")[0]) in calls
        and calls[cid].delivery == "held"
    ]


def stop_held_reply(
    state: SessionState, update_ids: Iterable[str], handle: SpeechHandle | None
) -> bool:
    """Stop a deferred reply that would voice a result held since a barge-in.

    A tool that outlived LiveKit's interruption timeout answers later in a reply of
    its own; while callstate holds the result (the caller's turn has not ended) that
    reply would talk over the caller, so it is stopped and the result is delivered,
    discarded or announced on the caller's next turn, as the reconciler decides.
    Returns whether it was stopped (its interruption callbacks run later).
    """
    if held_in_reply(state, update_ids) and handle is not None and not handle.done():
        handle.interrupt(force=True)
        return True
    return False


def wrap_llm_node(
    agent: Agent,
    before: Callable[[llm.ChatContext], Awaitable[None]],
    generated: Callable[[str], None],
) -> None:
    """Wrap ``agent.llm_node`` on the instance (a subclass's override is kept).

    ``before(chat_ctx)`` runs before inference; ``generated(text)`` gets the text
    generated so far after each chunk.
    """
    inner = agent.llm_node  # bound to the agent

    async def llm_node(
        chat_ctx: llm.ChatContext, tools: list[Any], model_settings: Any
    ) -> AsyncIterable[Any]:
        await before(chat_ctx)
        out: Any = inner(chat_ctx, tools, model_settings)
        if asyncio.iscoroutine(out):
            out = await out
        if isinstance(out, str):
            generated(out)
            yield out
            return
        if out is None:
            return
        text = ""
        async for chunk in out:
            piece = chunk if isinstance(chunk, str) else None
            if isinstance(chunk, llm.ChatChunk) and chunk.delta is not None:
                piece = chunk.delta.content
            if piece:
                text += piece
                generated(text)
            yield chunk

    agent.llm_node = llm_node  # type: ignore[method-assign]
