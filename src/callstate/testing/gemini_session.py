"""One loopback Gemini Live connection: the conversation a real session keeps, and its rules.

See :mod:`callstate.testing.gemini_server` for the server that holds these. Anything out
of order or unknown closes the connection with a reason naming it, as the Live API
does: code 1007 for a message that does not parse or fit the schema, 1008 for one the
session's state forbids.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from typing import Any, Protocol

import pydantic
from google.genai import types
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .gemini_script import BYTES_PER_MS, Call, Say, Step, next_id, wire

__all__ = ["GeminiSession", "Shared", "message_kind"]

_KINDS = ("setup", "clientContent", "realtimeInput", "toolResponse")
_SNAKE = {"client_content": "clientContent", "realtime_input": "realtimeInput"}
_SNAKE["tool_response"] = "toolResponse"


def message_kind(raw: str | bytes) -> str | None:
    """The kind of one client message (``toolResponse``...), or None when it is not a
    JSON object."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    key = next(iter(data), None) if isinstance(data, dict) else None
    return _SNAKE.get(key, key) if isinstance(key, str) else None


class Shared(Protocol):
    """What a connection shares with its ``GeminiServer``: the script, handles and the log."""

    script: deque[Step]
    handles: dict[str, list[dict[str, Any]]]
    issue_handles: bool
    received: list[dict[str, Any]]
    gate: asyncio.Event

    def notify(self) -> None: ...


class _Refuse(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class GeminiSession:
    """One websocket connection: one Live session (fresh, or resumed from a handle)."""

    def __init__(self, server: Shared, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.setup: dict[str, Any] | None = None
        #: the conversation as ``{"role": "user" | "model", "text": ...}`` turns
        self.conversation: list[dict[str, Any]] = []
        self.resumed_from: str | None = None
        self.received: list[dict[str, Any]] = []
        self.pending: dict[str, str] = {}  # call id -> name, awaiting a toolResponse
        self.cancelled: set[str] = set()
        self.answered: set[str] = set()
        self.audio_in = 0  # bytes of caller audio received
        self.refused: str | None = None  # why the server closed this connection
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._answers = asyncio.Event()

    # -- options the setup chose -------------------------------------------------------

    def _on(self, key: str) -> bool:
        return self.setup is not None and key in self.setup

    @property
    def _resumable(self) -> bool:
        """The setup asked for session resumption and the server issues handles."""
        return self._on("sessionResumption") and self.server.issue_handles

    @property
    def compression(self) -> dict[str, Any] | None:
        """The ``contextWindowCompression`` the setup asked for, if any."""
        return (self.setup or {}).get("contextWindowCompression")

    @property
    def generating(self) -> bool:
        """A model turn is under way (streaming, or waiting on a tool response)."""
        return self._task is not None and not self._task.done()

    def stop(self) -> None:
        """Cancel the model turn under way (the connection closed or dropped)."""
        if self._task is not None:
            self._task.cancel()

    # -- sending -----------------------------------------------------------------------

    async def send(self, message: types.LiveServerMessage) -> None:
        """Send one server message to this connection's client."""
        await self.ws.send(wire(message))

    async def content(self, **fields: Any) -> None:
        await self.send(types.LiveServerMessage(server_content=types.LiveServerContent(**fields)))

    async def refuse(self, code: int, reason: str) -> None:
        """Close the connection with ``reason`` (at most 123 bytes, as the protocol allows)."""
        self.refused = reason
        self.closed = True
        self.stop()
        self.server.notify()
        await self.ws.close(code, reason.encode()[:123].decode(errors="ignore"))

    # -- receiving ---------------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        """Check one client message against the schema and the session's state, and act."""
        try:
            kind, body = self._parse(raw)
            self.received.append({kind: body})
            self.server.received.append({kind: body})
            await getattr(self, f"_on_{kind}")(body)
        except _Refuse as exc:
            await self.refuse(exc.code, exc.reason)
        self.server.notify()

    def _parse(self, raw: str | bytes) -> tuple[str, dict[str, Any]]:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise _Refuse(1007, f"invalid JSON payload: {exc}") from exc
        if not isinstance(data, dict) or len(data) != 1:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise _Refuse(1007, f"a client message has exactly one of {_KINDS}; got {got}")
        key = next(iter(data))
        kind = _SNAKE.get(key, key)
        if kind not in _KINDS:
            raise _Refuse(1007, f"unknown client message {key!r}")
        try:
            msg = types.LiveClientMessage.model_validate({kind: data[key]})
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise _Refuse(1007, f"invalid {where}: {err['msg']}") from exc
        body = msg.model_dump(mode="json", by_alias=True, exclude_none=True)[kind]
        if kind != "setup" and self.setup is None:
            raise _Refuse(1008, f"{kind} before setup: the first message must be setup")
        return kind, body

    async def _on_setup(self, body: dict[str, Any]) -> None:
        if self.setup is not None:
            raise _Refuse(1008, "setup sent twice: a session takes one setup")
        model = body.get("model", "")
        if not model.startswith("models/"):
            raise _Refuse(1007, f"setup.model must be models/<name>, got {model!r}")
        handle = (body.get("sessionResumption") or {}).get("handle")
        if handle:
            if handle not in self.server.handles:
                raise _Refuse(1008, f"sessionResumption.handle {handle!r} is invalid or expired")
            self.conversation = [dict(t) for t in self.server.handles[handle]]
            self.resumed_from = handle
        self.setup = body
        await self.send(types.LiveServerMessage(setup_complete=types.LiveServerSetupComplete()))
        await self._offer_handle()

    async def _on_clientContent(self, body: dict[str, Any]) -> None:
        for i, turn in enumerate(body.get("turns") or []):
            role = turn.get("role")
            if role not in ("user", "model"):
                raise _Refuse(
                    1007, f"clientContent.turns[{i}].role must be user or model, got {role!r}"
                )
            text = "".join(p.get("text", "") for p in turn.get("parts") or [])
            self.conversation.append({"role": role, "text": text})
        if body.get("turnComplete"):
            await self.respond()

    async def _on_realtimeInput(self, body: dict[str, Any]) -> None:
        manual = (
            ((self.setup or {}).get("realtimeInputConfig") or {})
            .get("automaticActivityDetection", {})
            .get("disabled", False)
        )
        for signal in ("activityStart", "activityEnd"):
            if signal in body and not manual:
                raise _Refuse(
                    1008, f"realtimeInput.{signal} needs automaticActivityDetection disabled"
                )
        for blob in [body.get("audio"), *(body.get("mediaChunks") or [])]:
            if blob:
                self.audio_in += len(base64.b64decode(blob.get("data", "")))
        if body.get("text"):
            await self.caller_turn(body["text"], respond=True)

    async def _on_toolResponse(self, body: dict[str, Any]) -> None:
        for i, fr in enumerate(body.get("functionResponses") or []):
            call_id = fr.get("id")
            where = f"toolResponse.functionResponses[{i}].id"
            if call_id in self.cancelled:
                raise _Refuse(1008, f"{where} {call_id!r} was cancelled (toolCallCancellation)")
            if call_id in self.answered:
                raise _Refuse(1008, f"{where} {call_id!r} was answered already")
            if call_id not in self.pending:
                raise _Refuse(1008, f"{where} {call_id!r} is no call of this session")
            if fr.get("name") != self.pending[call_id]:
                raise _Refuse(1007, f"{where} {call_id!r} names {fr.get('name')!r}, not the call's")
            del self.pending[call_id]
            self.answered.add(call_id)
            text = json.dumps(fr.get("response"), sort_keys=True)
            self.conversation.append({"role": "user", "text": f"[{call_id}] {text}"})
        if not self.pending:
            self._answers.set()

    # -- the model's side ---------------------------------------------------------------

    async def caller_turn(self, text: str, *, respond: bool) -> None:
        """The caller said ``text``: transcribed (when asked for) and answered."""
        if self.generating:
            await self.barge_in()
        if self._on("inputAudioTranscription"):
            words = text.split(" ")
            half = max(1, len(words) // 2)
            for piece in (" ".join(words[:half]) + " ", " ".join(words[half:])):
                if piece.strip():
                    transcript = types.Transcription(text=piece)
                    await self.content(input_transcription=transcript)
        self.conversation.append({"role": "user", "text": text})
        if respond:
            await self.respond()

    async def respond(self) -> None:
        """Play the next scripted step as a model turn (nothing scripted: the model is silent)."""
        if self.generating or not self.server.script:
            return
        self._task = asyncio.get_running_loop().create_task(self._play())

    async def barge_in(self) -> None:
        """The caller talks over the model: cancel its turn and any call it waits on."""
        if not self.generating:
            return
        self.stop()
        if self.pending:
            ids = sorted(self.pending)
            self.cancelled.update(ids)
            self.pending.clear()
            cancel = types.LiveServerToolCallCancellation(ids=ids)
            await self.send(types.LiveServerMessage(tool_call_cancellation=cancel))
        await self.content(interrupted=True)

    async def _play(self) -> None:
        try:
            while self.server.script:
                step = self.server.script.popleft()
                if isinstance(step, Say):
                    await self._say(step)
                    if not step.more:
                        break
                    continue
                await self._call(step)
            await self.content(turn_complete=True)
            await self._offer_handle()
        except (asyncio.CancelledError, ConnectionClosed):
            pass
        finally:
            self.server.notify()

    async def _say(self, step: Say) -> None:
        pieces = step.pieces()
        per = step.audio_ms * BYTES_PER_MS // len(pieces)
        spoken = ""
        for i, piece in enumerate(pieces):
            blob = types.Blob(data=b"\x00" * per, mime_type="audio/pcm;rate=24000")
            turn = types.Content(role="model", parts=[types.Part(inline_data=blob)])
            said = types.Transcription(text=piece) if self._on("outputAudioTranscription") else None
            await self.content(model_turn=turn, output_transcription=said)
            spoken += piece
            if step.pause_after == i + 1 and i + 1 < len(pieces):
                self.server.gate.clear()
                self.server.notify()
                await self.server.gate.wait()
        self.conversation.append({"role": "model", "text": spoken})
        await self.content(generation_complete=True)

    async def _call(self, step: Call) -> None:
        call_id = step.id or next_id("call")
        self.pending[call_id] = step.name
        self._answers.clear()
        fc = types.FunctionCall(id=call_id, name=step.name, args=step.args)
        await self.send(
            types.LiveServerMessage(tool_call=types.LiveServerToolCall(function_calls=[fc]))
        )
        self.conversation.append({"role": "model", "text": f"{step.name}({json.dumps(step.args)})"})
        if self._resumable:  # not resumable while a call is open
            update = types.LiveServerSessionResumptionUpdate(resumable=False)
            await self.send(types.LiveServerMessage(session_resumption_update=update))
        self.server.notify()
        await self._answers.wait()

    async def _offer_handle(self) -> None:
        """A fresh resumption handle for the conversation so far (when the setup asked)."""
        if not self._resumable or self.pending:
            return
        handle = next_id("handle")
        self.server.handles[handle] = [dict(t) for t in self.conversation]
        update = types.LiveServerSessionResumptionUpdate(new_handle=handle, resumable=True)
        await self.send(types.LiveServerMessage(session_resumption_update=update))
