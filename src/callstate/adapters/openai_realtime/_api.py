"""The familiar ``openai`` realtime send API (``conn.response.create(...)`` …) on the adapter.

Each method builds the same client event the SDK's own resource would and hands it to
``RealtimeAdapter.send``, so everything user code sends goes through the adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Namespaces", "ResumedEvent"]

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ResumedEvent:
    """Yielded by the adapter once a new Realtime session carries the conversation on.

    Attributes:
        reason: ``drop`` (the socket closed), ``new_session`` (the SDK re-dialled and a
            ``session.created`` arrived), ``session_expired`` (the 60-minute cap was hit)
            or ``rollover`` (the adapter moved on before the cap), ``handoff``.
        old_session_id / new_session_id: the Realtime session ids.
        replayed: conversation items re-created in the new session.
        outputs: call ids whose ``function_call_output`` the replay carried.
        item_ids: callstate item id -> the replayed item's id in the new session
            (assistant utterance ids and call ids; a user turn is ``user@N``, N its
            index in ``state.items``).
        close_code: the websocket close code of a drop, when known.
        gap_s: seconds the link was down (by the keeper's clock).
    """

    reason: str
    old_session_id: str | None
    new_session_id: str | None
    replayed: int
    outputs: list[str] = field(default_factory=list)
    item_ids: dict[str, str] = field(default_factory=dict)
    close_code: int | None = None
    gap_s: float = 0.0
    type: Literal["callstate.resumed"] = "callstate.resumed"


def _event(kind: str, event_id: str | None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, **{k: v for k, v in fields.items() if v is not None}}
    if event_id is not None:
        out["event_id"] = event_id
    return out


class _Session:
    def __init__(self, send: Send) -> None:
        self._send = send

    async def update(self, *, session: dict[str, Any], event_id: str | None = None) -> None:
        """Send ``session.update`` (the adapter keeps the merged config for resumes)."""
        await self._send(_event("session.update", event_id, session=session))


class _Response:
    def __init__(self, send: Send) -> None:
        self._send = send

    async def create(
        self, *, response: dict[str, Any] | None = None, event_id: str | None = None
    ) -> None:
        """Ask for a response; the adapter holds it while one is active."""
        await self._send(_event("response.create", event_id, response=response))

    async def cancel(self, *, response_id: str | None = None, event_id: str | None = None) -> None:
        """Cancel the active response."""
        await self._send(_event("response.cancel", event_id, response_id=response_id))


class _Item:
    def __init__(self, send: Send) -> None:
        self._send = send

    async def create(
        self,
        *,
        item: dict[str, Any],
        previous_item_id: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """Add an item (a user text turn is recorded in the session)."""
        await self._send(
            _event(
                "conversation.item.create", event_id, item=item, previous_item_id=previous_item_id
            )
        )

    async def truncate(
        self,
        *,
        item_id: str,
        audio_end_ms: int,
        content_index: int = 0,
        event_id: str | None = None,
    ) -> None:
        """Truncate assistant audio at the played position (clamped to the audio received)."""
        await self._send(
            _event(
                "conversation.item.truncate",
                event_id,
                item_id=item_id,
                audio_end_ms=audio_end_ms,
                content_index=content_index,
            )
        )

    async def delete(self, *, item_id: str, event_id: str | None = None) -> None:
        """Delete an item from the Realtime session."""
        await self._send(_event("conversation.item.delete", event_id, item_id=item_id))


class _Conversation:
    def __init__(self, send: Send) -> None:
        self.item = _Item(send)


class _InputAudioBuffer:
    def __init__(self, send: Send) -> None:
        self._send = send

    async def append(self, *, audio: str, event_id: str | None = None) -> None:
        """Append base64 audio (queued in the session's outbox while the link is down)."""
        await self._send(_event("input_audio_buffer.append", event_id, audio=audio))

    async def commit(self, *, event_id: str | None = None) -> None:
        """Commit the input audio buffer."""
        await self._send(_event("input_audio_buffer.commit", event_id))

    async def clear(self, *, event_id: str | None = None) -> None:
        """Clear the input audio buffer."""
        await self._send(_event("input_audio_buffer.clear", event_id))


@dataclass
class Namespaces:
    """The resource namespaces, bound to one send function."""

    session: _Session
    response: _Response
    conversation: _Conversation
    input_audio_buffer: _InputAudioBuffer

    @classmethod
    def bind(cls, send: Send) -> Namespaces:
        """Namespaces whose methods call ``send``."""
        return cls(_Session(send), _Response(send), _Conversation(send), _InputAudioBuffer(send))
