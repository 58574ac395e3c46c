"""What the loopback Realtime server says: scripted responses and typed server events.

Every server event is built from the ``openai.types.realtime`` server event models, so
its shape is the real one. A test queues ``Say``, ``Call`` and ``Calls`` steps; each
``response.create`` (or auto-response after a user turn) plays the next step.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

from openai._models import BaseModel
from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDone,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeErrorEvent,
    RealtimeResponse,
    ResponseAudioDeltaEvent,
    ResponseAudioDoneEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)
from openai.types.realtime.realtime_error import RealtimeError
from openai.types.realtime.realtime_response_status import RealtimeResponseStatus
from openai.types.realtime.response_content_part_added_event import Part as AddedPart
from openai.types.realtime.response_content_part_done_event import Part as DonePart

__all__ = ["BYTES_PER_MS", "Call", "Calls", "Say", "Step", "error_event", "silence", "wire"]

#: pcm16 mono at 24 kHz, the Realtime API's default audio format.
BYTES_PER_MS = 48

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    """A fresh server-side id such as ``event_12``."""
    return f"{prefix}_{next(_ids)}"


def silence(ms: int) -> str:
    """``ms`` milliseconds of pcm16 silence, base64-encoded as audio deltas carry it."""
    return base64.b64encode(b"\x00" * (ms * BYTES_PER_MS)).decode()


def wire(event: BaseModel) -> str:
    """Serialise a server event model the way the API sends it."""
    return event.to_json(indent=None, exclude_unset=True)


def error_event(
    code: str, message: str, *, param: str | None = None, event_id: str | None = None
) -> RealtimeErrorEvent:
    """An ``error`` server event in the documented shape, echoing the client ``event_id``."""
    err = RealtimeError(
        type="invalid_request_error", code=code, message=message, param=param, event_id=event_id
    )
    return RealtimeErrorEvent(type="error", event_id=next_id("event"), error=err)


@dataclass
class Say:
    """An assistant audio answer: transcript deltas plus ``audio_ms`` of audio.

    ``pause_after`` stops the stream after that many chunks until the test calls
    ``RealtimeServer.resume()`` (or drops the socket): a response caught mid-utterance.
    """

    text: str
    audio_ms: int = 1000
    chunks: int = 4
    pause_after: int | None = None


@dataclass
class Call:
    """A function call the model asks for."""

    name: str
    arguments: str = "{}"
    call_id: str = field(default_factory=lambda: next_id("call"))


@dataclass
class Calls:
    """Several function calls the model asks for in one response (parallel tool calls)."""

    calls: list[Call]


Step = Say | Call | Calls


@dataclass
class Streamed:
    """What one played step left in the server's conversation."""

    item: dict[str, Any]
    audio_ms: int = 0
    status: str = "completed"


async def play(
    step: Step,
    response_id: str,
    send: Any,
    on_audio: Any,
    gate: asyncio.Event,
    metadata: dict[str, str] | None = None,
) -> Streamed:
    """Stream ``step`` as one response through ``send`` (an async callable taking a model).

    ``on_audio(item_id, ms)`` is told about every audio chunk sent, so the server knows
    how much audio each item has. Cancellation stops the stream where it is. ``metadata``
    (the ``response.create`` request's) is echoed in ``response.created``, as the API does.
    """
    await send(
        ResponseCreatedEvent(
            type="response.created",
            event_id=next_id("event"),
            response=RealtimeResponse(
                id=response_id,
                object="realtime.response",
                status="in_progress",
                output=[],
                metadata=metadata,
            ),
        )
    )
    if isinstance(step, Call | Calls):
        return await _play_calls(
            step.calls if isinstance(step, Calls) else [step], response_id, send
        )
    return await _play_say(step, response_id, send, on_audio, gate)


async def _play_calls(calls: list[Call], response_id: str, send: Any) -> Streamed:
    """Stream function calls as the output items of one response, then ``response.done``."""
    done_items: list[RealtimeConversationItemFunctionCall] = []
    for index, step in enumerate(calls):
        done_items.append(await _play_call(step, response_id, index, send))
    await send(_response_done(response_id, done_items, "completed"))
    return Streamed(item=done_items[-1].model_dump(exclude_none=True))


async def _play_call(
    step: Call, response_id: str, index: int, send: Any
) -> RealtimeConversationItemFunctionCall:
    item_id = next_id("item")
    fields: dict[str, Any] = {
        "type": "function_call",
        "id": item_id,
        "object": "realtime.item",
        "name": step.name,
        "call_id": step.call_id,
    }
    started = RealtimeConversationItemFunctionCall(status="in_progress", arguments="", **fields)
    done = RealtimeConversationItemFunctionCall(
        status="completed", arguments=step.arguments, **fields
    )
    common: dict[str, Any] = {"item_id": item_id, "output_index": index, "response_id": response_id}
    await send(_added(started, response_id, index))
    await send(
        ConversationItemAdded(
            type="conversation.item.added", event_id=next_id("event"), item=started
        )
    )
    await send(
        ResponseFunctionCallArgumentsDeltaEvent(
            type="response.function_call_arguments.delta",
            event_id=next_id("event"),
            call_id=step.call_id,
            delta=step.arguments,
            **common,
        )
    )
    await send(
        ResponseFunctionCallArgumentsDoneEvent(
            type="response.function_call_arguments.done",
            event_id=next_id("event"),
            call_id=step.call_id,
            name=step.name,
            arguments=step.arguments,
            **common,
        )
    )
    await send(_item_done(done, response_id, index))
    await send(
        ConversationItemDone(type="conversation.item.done", event_id=next_id("event"), item=done)
    )
    return done


async def _play_say(
    step: Say, response_id: str, send: Any, on_audio: Any, gate: asyncio.Event
) -> Streamed:
    item_id = next_id("item")
    started = RealtimeConversationItemAssistantMessage(
        type="message",
        role="assistant",
        id=item_id,
        object="realtime.item",
        status="in_progress",
        content=[],
    )
    common: dict[str, Any] = {
        "item_id": item_id,
        "output_index": 0,
        "response_id": response_id,
        "content_index": 0,
    }
    await send(_added(started, response_id))
    await send(
        ConversationItemAdded(
            type="conversation.item.added", event_id=next_id("event"), item=started
        )
    )
    await send(
        ResponseContentPartAddedEvent(
            type="response.content_part.added",
            event_id=next_id("event"),
            part=AddedPart(type="audio", transcript=""),
            **common,
        )
    )
    words = step.text.split(" ")
    per = max(1, -(-len(words) // step.chunks))
    ms_per = step.audio_ms // step.chunks
    for n in range(step.chunks):
        if step.pause_after is not None and n == step.pause_after:
            await gate.wait()
        piece = " ".join(words[n * per : (n + 1) * per])
        if piece:
            delta = piece if n == 0 else " " + piece
            await send(
                ResponseAudioTranscriptDeltaEvent(
                    type="response.output_audio_transcript.delta",
                    event_id=next_id("event"),
                    delta=delta,
                    **common,
                )
            )
        on_audio(item_id, ms_per)
        await send(
            ResponseAudioDeltaEvent(
                type="response.output_audio.delta",
                event_id=next_id("event"),
                delta=silence(ms_per),
                **common,
            )
        )
    await send(
        ResponseAudioDoneEvent(
            type="response.output_audio.done", event_id=next_id("event"), **common
        )
    )
    await send(
        ResponseAudioTranscriptDoneEvent(
            type="response.output_audio_transcript.done",
            event_id=next_id("event"),
            transcript=step.text,
            **common,
        )
    )
    await send(
        ResponseContentPartDoneEvent(
            type="response.content_part.done",
            event_id=next_id("event"),
            part=DonePart(type="audio", transcript=step.text),
            **common,
        )
    )
    done = assistant_item(item_id, step.text, status="completed")
    await send(_item_done(done, response_id))
    await send(
        ConversationItemDone(type="conversation.item.done", event_id=next_id("event"), item=done)
    )
    await send(_response_done(response_id, [done], "completed"))
    return Streamed(item=done.model_dump(exclude_none=True), audio_ms=ms_per * step.chunks)


def assistant_item(
    item_id: str, transcript: str, *, status: str
) -> RealtimeConversationItemAssistantMessage:
    """An assistant audio message item as the server reports it."""
    return RealtimeConversationItemAssistantMessage.model_validate(
        {
            "type": "message",
            "role": "assistant",
            "id": item_id,
            "object": "realtime.item",
            "status": status,
            "content": [{"type": "output_audio", "transcript": transcript}],
        }
    )


def _added(item: Any, response_id: str, index: int = 0) -> ResponseOutputItemAddedEvent:
    return ResponseOutputItemAddedEvent(
        type="response.output_item.added",
        event_id=next_id("event"),
        item=item,
        output_index=index,
        response_id=response_id,
    )


def _item_done(item: Any, response_id: str, index: int = 0) -> ResponseOutputItemDoneEvent:
    return ResponseOutputItemDoneEvent(
        type="response.output_item.done",
        event_id=next_id("event"),
        item=item,
        output_index=index,
        response_id=response_id,
    )


def response_done(response_id: str, status: str, reason: str | None = None) -> ResponseDoneEvent:
    """A ``response.done`` that ends a response early (``cancelled`` by a barge-in or client)."""
    return _response_done(response_id, [], status, reason)


def _response_done(
    response_id: str, output: list[Any], status: str, reason: str | None = None
) -> ResponseDoneEvent:
    details = RealtimeResponseStatus.model_validate({"type": status, "reason": reason})
    return ResponseDoneEvent(
        type="response.done",
        event_id=next_id("event"),
        response=RealtimeResponse.model_validate(
            {
                "id": response_id,
                "object": "realtime.response",
                "status": status,
                "status_details": details.model_dump(exclude_none=True),
                "output": [o.model_dump(exclude_none=True) for o in output],
            }
        ),
    )
