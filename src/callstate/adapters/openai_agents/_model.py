"""The SDK's websocket model with callstate on its wire: what it reads and sends is recorded."""

from __future__ import annotations

from typing import Any

from agents.realtime import OpenAIRealtimeWebSocketModel, RealtimeModelConfig
from openai.types.realtime.realtime_client_event import RealtimeClientEvent
from pydantic import TypeAdapter

from ._recorder import Recorder

__all__ = ["RecordingModel"]

_client_event: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)


def _without_voice(session: dict[str, Any]) -> dict[str, Any]:
    audio = dict(session.get("audio") or {})
    output = {k: v for k, v in (audio.get("output") or {}).items() if k != "voice"}
    if output:
        audio["output"] = output
    else:
        audio.pop("output", None)
    out = {k: v for k, v in session.items() if k != "audio"}
    if audio:
        out["audio"] = audio
    return out


class RecordingModel(OpenAIRealtimeWebSocketModel):
    """``OpenAIRealtimeWebSocketModel`` that hands every server event to a ``Recorder``,
    truncates interrupted audio the SDK left whole, and keeps a ``session.update`` from
    resending the voice once assistant audio played (the API refuses the whole update:
    ``cannot_update_voice``)."""

    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorder = recorder
        self._truncated: list[tuple[str, int]] = []  # (item id, audio_end_ms) sent

    async def connect(self, options: RealtimeModelConfig) -> None:
        """Connect as the SDK does; the playback tracker, if any, gives the played position."""
        self.recorder.tracker = options.get("playback_tracker")
        self.recorder.new_connection()
        await super().connect(options)

    async def close(self) -> None:
        """Close as the SDK does, after noting where playback was (closing resets it)."""
        self.recorder.note_playback()
        await super().close()

    async def _send_raw_message(self, event: Any) -> None:
        if event.type == "conversation.item.truncate":
            self._truncated.append((event.item_id, event.audio_end_ms))
        elif event.type == "session.update" and self.recorder.audio_out:
            data = event.model_dump(exclude_unset=True)
            data["session"] = _without_voice(data["session"])
            event = _client_event.validate_python(data)
        await super()._send_raw_message(event)

    async def _handle_ws_event(self, event: dict[str, Any]) -> None:
        if not isinstance(event, dict) or event.get("type") != "input_audio_buffer.speech_started":
            if isinstance(event, dict):
                self.recorder.on_server_event(event)
            await super()._handle_ws_event(event)
            return
        # read the played position before the SDK resets its trackers for the barge-in
        playing = self.recorder.playing()
        sent = len(self._truncated)
        await super()._handle_ws_event(event)
        if playing is None:
            return
        item_id, played, received = playing
        by_sdk = [ms for i, ms in self._truncated[sent:] if i == item_id]
        if by_sdk:
            played = by_sdk[-1]
        elif played < received:  # the SDK saw no playback position: the rest went unheard
            await super()._send_raw_message(
                _client_event.validate_python(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": played,
                    }
                )
            )
        self.recorder.cut(item_id, played)
