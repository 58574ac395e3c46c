"""A strict loopback OpenAI Chat Completions server for tests (streaming answers only).

It listens on 127.0.0.1 (ephemeral port) and answers ``POST /v1/chat/completions``
with ``stream: true`` as the API does: server-sent ``chat.completion.chunk`` events
(text as content deltas, function calls as ``tool_calls`` deltas), a usage chunk when
``stream_options.include_usage`` asks for one, then ``data: [DONE]``. The real
``AsyncOpenAI(base_url=server.url)`` and the Agents SDK's ``OpenAIChatCompletionsModel``
talk to it. A request is refused with the API's ``400`` error shape, and kept in
``ChatServer.errors``, when:

- its body is not a JSON object, names an unknown parameter, has no ``model``, does not
  stream, a message has an unknown role or field, or a tool is not a named function or
  is offered twice (``invalid_json``, ``unknown_parameter``, ``invalid_value``);
- a ``tool`` message answers a call id no earlier assistant message of the request
  made, or answers it twice, or an assistant message's ``tool_calls`` are not all
  answered before the next message (``invalid_tool_call_id``, ``tool_calls_unanswered``);
- it does not answer every function call the previous answer made
  (``tool_calls_unanswered``): the model must get each call's outcome;
- the script has no step left, or the step calls a function the request did not offer
  (``script_exhausted``, ``unknown_function``).

Tests queue ``Reply`` and ``Calls`` steps, one per request, and read ``requests``
(every accepted body, in order)::

    async with ChatServer() as server:
        server.queue(Calls(FunctionCall("move_booking", '{"booking_id": "B1"}', "c1")))
        server.queue(Reply("Moved."))
        client = AsyncOpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Self, get_type_hints

from openai.types.chat import ChatCompletionChunk
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

__all__ = ["ChatServer", "FunctionCall", "Calls", "Reply", "Step"]

_PARAMS = frozenset(get_type_hints(CompletionCreateParamsStreaming))
_FIELDS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio"},
    "tool": {"role", "content", "tool_call_id"},
}
_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """An answer of text, streamed one word per content delta."""

    text: str


@dataclass(frozen=True)
class FunctionCall:
    """One function call of an answer: the function's name, raw JSON arguments, call id."""

    name: str
    arguments: str
    call_id: str


@dataclass(frozen=True)
class Calls:
    """An answer of one or more function calls (``finish_reason: tool_calls``)."""

    calls: tuple[FunctionCall, ...]

    def __init__(self, *calls: FunctionCall) -> None:
        object.__setattr__(self, "calls", calls)


Step = Reply | Calls


class RequestError(Exception):
    """A request the API would refuse: ``code``, ``param`` and a message, as its 400 says."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise RequestError("invalid_value", "`messages` must be a non-empty array", "messages")
    pending: dict[str, str] = {}  # call id → the path of the assistant message making it
    answered: set[str] = set()
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role not in _FIELDS:
            raise RequestError("invalid_value", f"{where}.role is {role!r}", f"{where}.role")
        extra = sorted(set(m) - _FIELDS[role])
        if extra:
            raise RequestError("unknown_parameter", f"{where}.{extra[0]} is not allowed", where)
        if role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in pending:
                why = "answered twice" if call_id in answered else "made by no assistant message"
                msg = f"{where}.tool_call_id {call_id!r} is {why}"
                raise RequestError("invalid_tool_call_id", msg, f"{where}.tool_call_id")
            del pending[call_id]
            answered.add(call_id)
            if not isinstance(m.get("content"), str):
                raise RequestError("invalid_value", f"{where}.content must be a string", where)
            continue
        if pending:
            msg = (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'; {sorted(pending)} unanswered at {where}"
            )
            raise RequestError("tool_calls_unanswered", msg, where)
        for j, call in enumerate(m.get("tool_calls") or ()):
            fn = call.get("function") or {}
            try:
                json.loads(fn.get("arguments", ""))
            except (TypeError, ValueError):
                msg = f"{where}.tool_calls[{j}].function.arguments is not JSON"
                raise RequestError("invalid_value", msg, where) from None
            pending[str(call.get("id"))] = where
    if pending:
        msg = f"tool calls {sorted(pending)} are not answered by tool messages"
        raise RequestError("tool_calls_unanswered", msg, "messages")


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise RequestError("invalid_value", "`tools` must be an array", "tools")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name or tool.get("type") != "function":
            msg = f"tools[{i}] must be a function with a name"
            raise RequestError("invalid_value", msg, f"tools[{i}]")
        if name in names:
            msg = f"tools[{i}].function.name {name!r} is offered twice"
            raise RequestError("invalid_value", msg, f"tools[{i}].function.name")
        names.add(name)


def check_request(body: Any, issued: set[str]) -> None:
    """Raise ``RequestError`` for a body the API (or this server's strict rules) refuses."""
    if not isinstance(body, dict):
        raise RequestError("invalid_json", "the body must be a JSON object")
    unknown = sorted(set(body) - _PARAMS)
    if unknown:
        raise RequestError("unknown_parameter", f"Unrecognized parameter: {unknown[0]}", unknown[0])
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestError("invalid_value", "`model` must be a non-empty string", "model")
    if body.get("stream") is not True:
        raise RequestError("invalid_value", "this server only streams: `stream` must be true")
    _check_messages(body.get("messages"))
    _check_tools(body.get("tools", []))
    got = {m.get("tool_call_id") for m in body["messages"] if m.get("role") == "tool"}
    missing = sorted(issued - got)
    if missing:
        msg = f"the function calls {missing} of the previous answer have no tool message"
        raise RequestError("tool_calls_unanswered", msg, "messages")


def _offered(body: dict[str, Any]) -> set[str]:
    return {
        str((t.get("function") or {}).get("name"))
        for t in body.get("tools") or ()
        if t.get("type") == "function"
    }


def _chunks(step: Step, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events answering ``body`` with ``step``."""
    head = {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": body["model"],
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    if isinstance(step, Reply):
        words = step.text.split(" ")
        out += [chunk({"content": w if i == 0 else f" {w}"}) for i, w in enumerate(words)]
        out.append(chunk({}, "stop"))
    else:
        for i, call in enumerate(step.calls):
            first = {"index": i, "id": call.call_id, "type": "function"}
            out.append(chunk({"tool_calls": [{**first, "function": {"name": call.name}}]}))
            args = {"index": i, "function": {"arguments": call.arguments}}
            out.append(chunk({"tool_calls": [args]}))
        out.append(chunk({}, "tool_calls"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        out.append({**head, "choices": [], "usage": usage})
    for c in out:  # the SDK parses each chunk with this model: keep the shape the real one
        ChatCompletionChunk.model_validate(c)
    return out


class ChatServer:
    """The loopback server: a scripted answer per accepted request, strict about the rest."""

    def __init__(self) -> None:
        self.script: deque[Step] = deque()
        self.requests: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self._issued: set[str] = set()  # call ids of the last answer, not yet answered
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The ``base_url`` to give ``AsyncOpenAI``."""
        if self._server is None:
            msg = "the server is not started: use `async with ChatServer() as server`"
            raise RuntimeError(msg)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def queue(self, *steps: Step) -> None:
        """Answer the next requests with ``steps``, one each, in order."""
        self.script.extend(steps)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await self._answer(reader)
            if status == 200:
                head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                writer.write(f"{head}Connection: close\r\n\r\n".encode())
                for c in payload:
                    writer.write(f"data: {json.dumps(c)}\n\n".encode())
                writer.write(b"data: [DONE]\n\n")
            else:
                data = json.dumps(payload).encode()
                head = f"HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n"
                writer.write(f"{head}Content-Length: {len(data)}\r\n".encode())
                writer.write(b"Connection: close\r\n\r\n" + data)
            await writer.drain()
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if request[:2] != ["POST", "/v1/chat/completions"]:
            return self._refuse(RequestError("not_found", f"no route {request[:2]}"), 404)
        if not headers.get("authorization", "").startswith("Bearer "):
            return self._refuse(RequestError("invalid_api_key", "no bearer token"), 401)
        try:
            parsed = json.loads(body)
        except ValueError:
            return self._refuse(RequestError("invalid_json", "the body is not JSON"))
        try:
            try:
                check_request(parsed, self._issued)
            except (AttributeError, TypeError) as exc:  # a part that is not the right shape
                raise RequestError("invalid_value", f"malformed request: {exc}") from exc
            step = self._next(parsed)
        except RequestError as exc:
            return self._refuse(exc)
        self.requests.append(parsed)
        self._issued = {c.call_id for c in step.calls} if isinstance(step, Calls) else set()
        return 200, _chunks(step, parsed)

    def _next(self, body: dict[str, Any]) -> Step:
        if not self.script:
            raise RequestError("script_exhausted", "no scripted answer left for this request")
        step = self.script[0]
        if isinstance(step, Calls):
            unknown = [c.name for c in step.calls if c.name not in _offered(body)]
            if unknown:
                msg = f"the scripted call to {unknown[0]!r} names no function of the request"
                raise RequestError("unknown_function", msg, "tools")
        return self.script.popleft()

    def _refuse(self, exc: RequestError, status: int = 400) -> tuple[int, Any]:
        error = {
            "message": str(exc),
            "type": "invalid_request_error",
            "param": exc.param,
            "code": exc.code,
        }
        self.errors.append(error)
        return status, {"error": error}
