"""The loopback Chat Completions server and the scripted speech models hold their rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from agents.voice import StreamedAudioInput, STTModelSettings
from openai import AsyncOpenAI

from callstate.testing.chat_server import Calls, ChatServer, FunctionCall, Reply
from callstate.testing.voice_models import (
    ScriptedSTT,
    ScriptedTTS,
    SpeechCodeError,
    silence,
    speech,
    text_of,
)

TOOLS: list[Any] = [{"type": "function", "function": {"name": "move_booking", "parameters": {}}}]
CALL = {"id": "c1", "type": "function", "function": {"name": "move_booking", "arguments": "{}"}}


@pytest.fixture
async def server() -> AsyncIterator[ChatServer]:
    async with ChatServer() as srv:
        yield srv


def client(server: ChatServer) -> AsyncOpenAI:
    """The real client on the loopback server, without retries."""
    return AsyncOpenAI(api_key="sk-test", base_url=server.url, max_retries=0)


async def answer(server: ChatServer, messages: list[Any], **params: Any) -> list[Any]:
    """Stream one completion and return its chunks."""
    stream = await client(server).chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, **params
    )
    return [chunk async for chunk in stream]


async def refused(server: ChatServer, messages: list[Any], **params: Any) -> str:
    """The error code of a request the server must refuse."""
    with pytest.raises(openai.BadRequestError) as info:
        await answer(server, messages, **params)
    body: Any = info.value.body
    return str(body["code"])


async def test_a_reply_streams_as_content_deltas_with_usage() -> None:
    """A scripted reply arrives word by word through the real client, then a usage chunk."""
    async with ChatServer() as server:
        server.queue(Reply("Hello there friend."))
        chunks = await answer(
            server, [{"role": "user", "content": "hi"}], stream_options={"include_usage": True}
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Hello there friend." == text
    assert "stop" == chunks[-2].choices[0].finish_reason
    assert 2 == chunks[-1].usage.total_tokens


async def test_a_tool_message_for_an_unknown_call_id_is_refused(server: ChatServer) -> None:
    """A ``tool`` message answering a call no assistant message made gets a 400."""
    server.queue(Reply("no"))
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "nope", "content": "{}"},
    ]
    assert "invalid_tool_call_id" == await refused(server, messages)
    assert "made by no assistant message" in server.errors[0]["message"]


async def test_an_unanswered_call_of_the_previous_answer_is_refused(server: ChatServer) -> None:
    """After an answer calling ``c1``, a request without ``c1``'s output gets a 400, and
    one carrying it is answered."""
    server.queue(Calls(FunctionCall("move_booking", "{}", "c1")), Reply("Moved."))
    user = {"role": "user", "content": "move it"}
    await answer(server, [user], tools=TOOLS)
    assert "tool_calls_unanswered" == await refused(server, [user], tools=TOOLS)
    done = [user, {"role": "assistant", "tool_calls": [CALL]}]
    done.append({"role": "tool", "tool_call_id": "c1", "content": "{}"})
    assert 1 == len(server.errors)
    assert len(await answer(server, done, tools=TOOLS)) > 0


async def test_tool_calls_left_unanswered_inside_a_request_are_refused(server: ChatServer) -> None:
    """An assistant message's calls must be answered before the next message."""
    server.queue(Reply("no"))
    messages = [
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "user", "content": "hello?"},
    ]
    assert "tool_calls_unanswered" == await refused(server, messages)


async def test_unknown_parameters_fields_and_a_missing_script_are_refused(
    server: ChatServer,
) -> None:
    """An unknown body parameter or message field, a call to a function not offered, and a
    request with no scripted answer left each get their own 400 code."""
    user = {"role": "user", "content": "hi"}
    assert "unknown_parameter" == await refused(server, [user], extra_body={"bogus": 1})
    assert "unknown_parameter" == await refused(server, [{**user, "bogus": 1}])
    server.queue(Calls(FunctionCall("refund", "{}", "r1")))
    assert "unknown_function" == await refused(server, [user], tools=TOOLS)
    server.script.clear()
    assert "script_exhausted" == await refused(server, [user])


async def test_malformed_tools_and_tool_calls_are_refused(
    server: ChatServer,
) -> None:
    """A tool without a function name, a function offered twice, or a tool call that is
    not an object gets a 400."""
    user = {"role": "user", "content": "hi"}
    assert "invalid_value" == await refused(server, [user], tools=[{"type": "function"}])
    assert "invalid_value" == await refused(server, [user], tools=TOOLS + TOOLS)
    assert "offered twice" in server.errors[-1]["message"]
    bad_call = [{"role": "assistant", "tool_calls": ["c1"]}]
    assert "invalid_value" == await refused(server, bad_call)


async def test_a_request_that_does_not_stream_or_has_no_token_is_refused(
    server: ChatServer,
) -> None:
    """This server only streams (400), and a request without a bearer token gets a 401."""
    with pytest.raises(openai.BadRequestError):
        await client(server).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    async with httpx.AsyncClient() as raw:
        got = await raw.post(f"{server.url}/chat/completions", json={})
    assert 401 == got.status_code


def test_speech_reads_back_as_its_text() -> None:
    """``text_of(speech(text))`` is ``text``; 10 ms of audio a character; silence says nothing."""
    audio = speech("Move B1 to eight.")
    assert (17 * 240, "Move B1 to eight.") == (audio.size, text_of(audio))
    assert "" == text_of(silence(50))
    assert "ok" == text_of((speech("ok").astype(np.float32) / 32767).reshape(-1, 1))


def test_audio_speech_did_not_make_is_refused() -> None:
    """Audio of part frames, or of a frame mixing values, raises ``SpeechCodeError``."""
    with pytest.raises(SpeechCodeError, match="not a whole number"):
        text_of(speech("ok")[:-1])
    mixed = speech("ok")
    mixed[3] = 1
    with pytest.raises(SpeechCodeError, match="frame 0 mixes"):
        text_of(mixed)
    with pytest.raises(SpeechCodeError, match="has no speech code"):
        speech("\U0001f600")


async def test_streamed_input_is_transcribed_turn_by_turn_at_silence() -> None:
    """A streamed input's speech is one turn per stretch ended by silence, split across
    chunks as it may arrive; the end of the stream ends the last turn."""
    stt = ScriptedSTT()
    audio = StreamedAudioInput()
    turns = await stt.create_session(audio, STTModelSettings(), False, False)
    first = np.concatenate([speech("Hello"), silence(20)])
    for part in (first[:1000], first[1000:], speech("Bye")):
        await audio.add_audio(part)
    await audio.add_audio(None)
    async with asyncio.timeout(5):
        got = [t async for t in turns.transcribe_turns()]
    assert ["Hello", "Bye"] == got == stt.heard


async def test_tts_says_the_text_in_chunks() -> None:
    """The TTS model's pcm says exactly the text it was given, in chunks of eight letters."""
    tts = ScriptedTTS()
    chunks = [c async for c in tts.run("Hello there.", settings=None)]  # type: ignore[arg-type]
    assert (2, "Hello there.", ["Hello there."]) == (
        len(chunks),
        text_of(b"".join(chunks)),
        tts.spoken,
    )
