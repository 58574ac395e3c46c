"""One loopback Realtime session: the conversation a real session keeps, and its rules.

See :mod:`callstate.testing.realtime_server` for the server that holds these.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any, Protocol

from openai._models import BaseModel
from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDeletedEvent,
    ConversationItemDone,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemTruncatedEvent,
    InputAudioBufferClearedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeConversationItemUserMessage,
    RealtimeSessionCreateRequest,
    SessionUpdatedEvent,
)
from openai.types.realtime.conversation_item import ConversationItem
from openai.types.realtime.realtime_server_event import ConversationItemRetrieved
from pydantic import TypeAdapter
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .realtime_script import (
    BYTES_PER_MS,
    Say,
    Step,
    assistant_item,
    error_event,
    next_id,
    play,
    response_done,
    wire,
)
from .realtime_validate import validate_client_event


class Shared(Protocol):
    """What a connection shares with its ``RealtimeServer``: the script and the log."""

    script: deque[Step]
    session_config: dict[str, Any]
    received: list[dict[str, Any]]
    malformed: list[Any]
    gate: asyncio.Event

    def notify(self) -> None: ...


__all__ = ["ServerSession", "validate_client_event"]


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class _Reject(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class ServerSession:
    """One websocket connection: one fresh Realtime session and its conversation."""

    def __init__(self, server: Shared, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.id = next_id("sess")
        start: dict[str, Any] = {"type": "realtime", "output_modalities": ["audio"]}
        self.config = _merge(start, server.session_config)
        self.items: list[dict[str, Any]] = []
        self.audio_ms: dict[str, int] = {}
        self.transcripts: dict[str, str] = {}
        self.call_ids: set[str] = set()
        # function_call items per call id still awaiting their output: a server that
        # reuses an id (as some OpenAI-compatible ones do) gets one output per call
        self.unanswered: dict[str, int] = {}
        self.received: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.truncated: dict[str, int] = {}
        self.active: str | None = None
        self.streaming: str | None = None
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._input_bytes = 0
        self._speech_item: str | None = None  # the user item the current speech will commit
        self.late: list[tuple[str, str]] = []  # (item id, transcript) not sent yet

    @property
    def transcribing(self) -> bool:
        """Input transcription is on (``audio.input.transcription``): transcripts are sent."""
        return bool(((self.config.get("audio") or {}).get("input") or {}).get("transcription"))

    @property
    def left_unanswered(self) -> list[str]:
        """Call ids with a ``function_call`` item still waiting for its output (the model
        waits on it): one entry per item, so a reused id left once shows once."""
        return sorted(c for c, n in self.unanswered.items() for _ in range(n))

    def stop(self) -> None:
        """Cancel the response being played, if any (the connection closed or dropped)."""
        if self._task is not None:
            self._task.cancel()

    # -- sending ---------------------------------------------------------------------

    async def send(self, event: BaseModel) -> None:
        """Send one server event (a model) to this session's client."""
        data = event.model_dump(exclude_none=True)
        kind = data["type"]
        if kind == "response.output_item.added":
            self._add_item(data["item"])
            if data["item"].get("type") == "message":
                self.streaming = data["item"]["id"]
        elif kind == "response.output_audio_transcript.delta":
            self.transcripts[data["item_id"]] = (
                self.transcripts.get(data["item_id"], "") + data["delta"]
            )
        elif kind == "response.output_item.done":
            self._replace_item(data["item"])
            self.streaming = None
        elif kind == "error":
            self.errors.append(data["error"])
        elif kind in ("conversation.item.added", "conversation.item.done"):
            event = self._placed(event, data)
        if self.closed:
            return
        try:
            await self.ws.send(wire(event))
        except ConnectionClosed:
            self.closed = True
        self.server.notify()

    def _placed(self, event: BaseModel, data: dict[str, Any]) -> BaseModel:
        """A response's item names the item before it (``previous_item_id``), as the API does."""
        ids = [i["id"] for i in self.items]
        item_id = data["item"].get("id")
        if data.get("previous_item_id") is not None or item_id not in ids:
            return event
        at = ids.index(item_id)
        return event.model_copy(update={"previous_item_id": ids[at - 1] if at else None})

    async def reject(
        self, code: str, message: str, param: str | None, event_id: str | None
    ) -> None:
        await self.send(error_event(code, message, param=param, event_id=event_id))

    # -- conversation ----------------------------------------------------------------

    def _add_item(self, item: dict[str, Any], after: str | None = None) -> None:
        if item.get("type") == "function_call" and item.get("call_id"):
            self.call_ids.add(item["call_id"])
            self.unanswered[item["call_id"]] = self.unanswered.get(item["call_id"], 0) + 1
        elif item.get("type") == "function_call_output":
            self.unanswered[item["call_id"]] -= 1
        if after is None:
            self.items.append(item)
        else:
            idx = 0 if after == "root" else [i["id"] for i in self.items].index(after) + 1
            self.items.insert(idx, item)

    def _replace_item(self, item: dict[str, Any]) -> None:
        for n, it in enumerate(self.items):
            if it.get("id") == item.get("id"):
                self.items[n] = item

    def _on_audio(self, item_id: str, ms: int) -> None:
        self.audio_ms[item_id] = self.audio_ms.get(item_id, 0) + ms

    def item(self, item_id: str) -> dict[str, Any] | None:
        """The conversation item with this id, if the session has it."""
        return next((i for i in self.items if i.get("id") == item_id), None)

    # -- client events ---------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        event_id: str | None = None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            await self.reject(
                "invalid_json", f"We could not parse the JSON body: {exc}", None, None
            )
            return
        if isinstance(data, dict) and isinstance(data.get("event_id"), str):
            event_id = data["event_id"]
        problem = validate_client_event(data)
        if problem is not None:
            self.server.malformed.append(data)
            code = "unknown_parameter" if problem.startswith("Unknown") else "invalid_value"
            param = problem.split("'")[1]
            await self.reject(code, problem, param, event_id)
            return
        self.received.append(data)
        self.server.received.append(data)
        try:
            await getattr(self, "_on_" + data["type"].replace(".", "_"))(data)
        except _Reject as exc:
            await self.reject(exc.code, exc.message, exc.param, event_id)
        self.server.notify()

    async def _on_session_update(self, data: dict[str, Any]) -> None:
        voice = ((data["session"].get("audio") or {}).get("output") or {}).get("voice")
        now = ((self.config.get("audio") or {}).get("output") or {}).get("voice")
        if voice is not None and voice != now and any(self.audio_ms.values()):
            msg = "Cannot update a conversation's voice if assistant audio is present."
            raise _Reject("cannot_update_voice", msg, None)
        self.config = _merge(self.config, data["session"])
        await self.send(
            SessionUpdatedEvent(
                type="session.updated",
                event_id=next_id("event"),
                session=RealtimeSessionCreateRequest.model_validate({**self.config, "id": self.id}),
            )
        )

    async def _on_conversation_item_create(self, data: dict[str, Any]) -> None:
        item = dict(data["item"])
        kind = item["type"]
        if kind == "function_call_output" and item["call_id"] not in self.call_ids:
            msg = f"Tool call ID '{item['call_id']}' not found in conversation."
            raise _Reject("invalid_tool_call_id", msg, "item.call_id")
        if kind == "function_call_output" and not self.unanswered.get(item["call_id"]):
            msg = f"Tool call ID '{item['call_id']}' already has an output for every call."
            raise _Reject("invalid_tool_call_id", msg, "item.call_id")
        if kind == "function_call":
            if not item.get("call_id"):
                raise _Reject(
                    "missing_required_parameter",
                    "Missing required parameter: 'item.call_id'.",
                    "item.call_id",
                )
            if item["call_id"] in self.call_ids:
                msg = f"Duplicate tool call ID '{item['call_id']}' in conversation."
                raise _Reject("invalid_value", msg, "item.call_id")
        if item.get("role") == "assistant":
            for n, part in enumerate(item.get("content", [])):
                if part.get("type") != "output_text":
                    msg = "Assistant messages can only be created with 'output_text' content."
                    raise _Reject("invalid_value", msg, f"item.content[{n}].type")
        if "id" in item and (len(item["id"]) > 32 or self.item(item["id"]) is not None):
            raise _Reject("invalid_value", f"Invalid 'item.id': {item['id']!r}.", "item.id")
        after = data.get("previous_item_id")
        if after is not None and after != "root" and self.item(after) is None:
            msg = f"Previous item with id '{after}' not found."
            raise _Reject("invalid_value", msg, "previous_item_id")
        item.setdefault("id", next_id("item"))
        item["object"], item["status"] = "realtime.item", "completed"
        self._add_item(item, after)
        prev = self.items[self.items.index(item) - 1]["id"] if self.items.index(item) else None
        body = {"event_id": next_id("event"), "item": item, "previous_item_id": prev}
        await self.send(
            ConversationItemAdded.model_validate({**body, "type": "conversation.item.added"})
        )
        body["event_id"] = next_id("event")
        await self.send(
            ConversationItemDone.model_validate({**body, "type": "conversation.item.done"})
        )

    async def _on_conversation_item_truncate(self, data: dict[str, Any]) -> None:
        item_id, end = data["item_id"], data["audio_end_ms"]
        item = self.item(item_id)
        if item is None or item.get("role") != "assistant":
            raise _Reject("invalid_value", f"Item with id '{item_id}' not found.", "item_id")
        if data["content_index"] != 0:
            raise _Reject("invalid_value", "Invalid 'content_index'.", "content_index")
        have = self.audio_ms.get(item_id, 0)
        if end > have:
            msg = f"Audio content of {have}ms is already shorter than {end}ms"
            raise _Reject("invalid_value", msg, "audio_end_ms")
        self.truncated[item_id] = end
        self.transcripts[item_id] = ""
        await self.send(
            ConversationItemTruncatedEvent(
                type="conversation.item.truncated",
                event_id=next_id("event"),
                item_id=item_id,
                content_index=0,
                audio_end_ms=end,
            )
        )

    async def _on_conversation_item_delete(self, data: dict[str, Any]) -> None:
        item = self.item(data["item_id"])
        if item is None:
            raise _Reject(
                "invalid_value", f"Item with id '{data['item_id']}' not found.", "item_id"
            )
        self.items.remove(item)
        if item.get("type") == "function_call_output":  # its call waits for an output again
            self.unanswered[item["call_id"]] = self.unanswered.get(item["call_id"], 0) + 1
        await self.send(
            ConversationItemDeletedEvent(
                type="conversation.item.deleted", event_id=next_id("event"), item_id=item["id"]
            )
        )

    async def _on_conversation_item_retrieve(self, data: dict[str, Any]) -> None:
        item = self.item(data["item_id"])
        if item is None:
            msg = f"Item with id '{data['item_id']}' not found."
            raise _Reject("invalid_value", msg, "item_id")
        if item["id"] in self.truncated:  # truncation drops the unheard transcript
            parts = [{**p, "transcript": ""} for p in item.get("content", [])]
            item = {**item, "content": parts}
        await self.send(
            ConversationItemRetrieved(
                type="conversation.item.retrieved",
                event_id=next_id("event"),
                item=TypeAdapter(ConversationItem).validate_python(item),
            )
        )

    async def _on_response_create(self, data: dict[str, Any]) -> None:
        if self.active is not None:
            msg = (
                f"Conversation already has an active response in progress: {self.active}. "
                "Wait until the response is finished before creating a new one."
            )
            raise _Reject("conversation_already_has_active_response", msg, None)
        self.responses.append(data)
        self.start_response((data.get("response") or {}).get("metadata"))

    async def _on_response_cancel(self, data: dict[str, Any]) -> None:
        if self.active is None:
            raise _Reject(
                "response_cancel_not_active", "Cancellation failed: no active response found.", None
            )
        await self.cancel_active("client_cancelled")

    async def _on_input_audio_buffer_append(self, data: dict[str, Any]) -> None:
        self._input_bytes += len(data["audio"]) * 3 // 4

    async def _on_input_audio_buffer_clear(self, data: dict[str, Any]) -> None:
        self._input_bytes = 0
        await self.send(
            InputAudioBufferClearedEvent(
                type="input_audio_buffer.cleared", event_id=next_id("event")
            )
        )

    async def _on_input_audio_buffer_commit(self, data: dict[str, Any]) -> None:
        if self._input_bytes < 100 * BYTES_PER_MS:
            msg = "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio."
            raise _Reject("input_audio_buffer_commit_empty", msg, None)
        self._input_bytes = 0
        await self._user_item(None)

    async def _on_output_audio_buffer_clear(self, data: dict[str, Any]) -> None:
        raise _Reject(
            "invalid_value", "output_audio_buffer.clear is only supported for WebRTC.", "type"
        )

    # -- server-side turns ---------------------------------------------------------------

    def start_response(self, metadata: dict[str, str] | None = None) -> None:
        """Play the next scripted step as a response (a default short answer if none);
        ``metadata`` is the request's, echoed back."""
        step: Step = self.server.script.popleft() if self.server.script else Say("Okay.", 200, 1)
        rid = self.active = next_id("resp")

        async def run() -> None:
            try:
                await play(step, rid, self.send, self._on_audio, self.server.gate, metadata)
            finally:
                if self.active == rid:
                    self.active = None
                self.server.notify()

        self._task = asyncio.get_running_loop().create_task(run())

    async def cancel_active(self, reason: str) -> None:
        """End the active response early, as a barge-in or ``response.cancel`` does."""
        rid, task = self.active, self._task
        if rid is None or task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self.streaming is not None:
            done = assistant_item(
                self.streaming, self.transcripts.get(self.streaming, ""), status="incomplete"
            )
            self._replace_item(done.model_dump(exclude_none=True))
            self.streaming = None
        self.active = None
        await self.send(response_done(rid, "cancelled", reason))

    async def _user_item(self, transcript: str | None, *, late: bool = False) -> str:
        item_id, self._speech_item = self._speech_item or next_id("item"), None
        part: dict[str, Any] = {"type": "input_audio"}
        user = RealtimeConversationItemUserMessage.model_validate(
            {
                "type": "message",
                "role": "user",
                "id": item_id,
                "object": "realtime.item",
                "status": "completed",
                "content": [part],
            }
        )
        prev = self.items[-1]["id"] if self.items else None
        await self.send(
            InputAudioBufferCommittedEvent(
                type="input_audio_buffer.committed",
                event_id=next_id("event"),
                item_id=item_id,
                previous_item_id=prev,
            )
        )
        self._add_item(user.model_dump(exclude_none=True))
        await self.send(
            ConversationItemAdded(
                type="conversation.item.added",
                event_id=next_id("event"),
                item=user,
                previous_item_id=prev,
            )
        )
        await self.send(
            ConversationItemDone(
                type="conversation.item.done",
                event_id=next_id("event"),
                item=user,
                previous_item_id=prev,
            )
        )
        if transcript is not None and self.transcribing:
            self.late.append((item_id, transcript))
            if not late:
                await self.transcribe()
        return item_id

    async def transcribe(self) -> None:
        """Send the transcripts not sent yet (transcription runs beside the response)."""
        late, self.late = self.late, []
        for item_id, transcript in late:
            await self.send(
                ConversationItemInputAudioTranscriptionCompletedEvent.model_validate(
                    {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "event_id": next_id("event"),
                        "item_id": item_id,
                        "content_index": 0,
                        "transcript": transcript,
                        "usage": {"type": "duration", "seconds": 1.0},
                    }
                )
            )

    async def speech_started(self) -> str:
        item_id = self._speech_item = next_id("item")
        await self.send(
            InputAudioBufferSpeechStartedEvent(
                type="input_audio_buffer.speech_started",
                event_id=next_id("event"),
                audio_start_ms=0,
                item_id=item_id,
            )
        )
        # server VAD's default interrupt_response: the caller's speech cancels the answer
        await self.cancel_active("turn_detected")
        return item_id

    async def speech_done(self, text: str, *, respond: bool, late: bool = False) -> None:
        await self.send(
            InputAudioBufferSpeechStoppedEvent(
                type="input_audio_buffer.speech_stopped",
                event_id=next_id("event"),
                audio_end_ms=1000,
                item_id=self._speech_item or next_id("item"),
            )
        )
        await self._user_item(text, late=late)
        if respond and self.active is None:
            self.start_response()
