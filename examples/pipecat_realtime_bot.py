"""A Pipecat bot on a speech-to-speech model, with callstate: the same two lines as a
cascaded bot, the LLM being ``OpenAIRealtimeLLMService`` or ``GeminiLiveLLMService``.

Runs offline against callstate's strict loopback servers (no API key): the caller asks
to move a booking, the model calls ``move_booking`` (run once, through the guard) and
says it is done::

    python examples/pipecat_realtime_bot.py --provider openai    # or --provider gemini

With ``--drop`` the line then goes: OpenAI's server ends the session at its 60-minute
cap (``session_expired``), Gemini's drops the socket; the call carries on in a new
session with the conversation (the caller's next question is answered in context, no
greeting), and the link loss and restore are recovery events.

For a real call drop the loopback server: give the service your API key (no
``base_url`` / ``http_options``) and put ``transport.input()`` first and
``transport.output()`` in place of ``Speaker``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMRunFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

import callstate
from callstate.adapters.pipecat import PipecatRecovery
from callstate.testing import gemini_server, realtime_server

SYSTEM = "You move restaurant bookings. Be brief: this is a phone call."
SECRET = b"use-32-random-bytes-in-production"  # signs tokens, encrypts caller ids
HELLO = "Hello, how can I help?"
ASK = "Please move booking B1 to eight tonight."
DONE = "Done: your booking is now at eight."
AGAIN = "Sorry, the line went. What time is it now?"
STILL = "It is at eight tonight, as we said."
RATE = 24_000

tools = callstate.ToolRegistry()


@tools.tool(effect="write", idempotent=True)
async def move_booking(booking_id: str, time: str, *, ctx: callstate.ToolContext) -> dict[str, Any]:
    """Move a booking; a real system keys the change by ``ctx.idempotency_key``."""
    return {"booking_id": booking_id, "time": time, "moved": True}


# what the model is told about the tool (the guard runs it; no handler here)
SCHEMA = ToolsSchema(
    standard_tools=[
        FunctionSchema(
            name="move_booking",
            description="Move the caller's booking to another time.",
            properties={"booking_id": {"type": "string"}, "time": {"type": "string"}},
            required=["booking_id", "time"],
        )
    ]
)


class Speaker(BaseOutputTransport):
    """An output with no device: it prints each reply as it finishes playing."""

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=RATE))
        self.replies: asyncio.Queue[str] = asyncio.Queue()
        self.interrupted = asyncio.Event()  # an InterruptionFrame went by
        self._words: list[str] = []

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: Any) -> bool:
        return True  # a real transport plays it

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        await super().push_frame(frame, direction)
        if isinstance(frame, TTSTextFrame):  # released as its audio plays
            self._words.append(frame.text)
        elif isinstance(frame, InterruptionFrame):
            self.interrupted.set()
        elif isinstance(frame, LLMFullResponseEndFrame) and self._words:
            self.replies.put_nowait("".join(self._words).strip())
            self._words = []


def openai_llm(server: realtime_server.RealtimeServer) -> LLMService:
    """Pipecat's OpenAI Realtime service, dialling the loopback server."""
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

    return OpenAIRealtimeLLMService(
        api_key="sk-local",
        base_url=f"{server.url}/realtime",
        settings=OpenAIRealtimeLLMService.Settings(system_instruction=SYSTEM),
    )


def gemini_llm(server: gemini_server.GeminiServer) -> LLMService:
    """Pipecat's Gemini Live service, dialling the loopback server."""
    from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService

    return GeminiLiveLLMService(
        api_key="local",
        http_options=server.http_options(),
        system_instruction=SYSTEM,
        tools=SCHEMA,  # on the service: tools in the context would make it redial
        settings=GeminiLiveLLMService.Settings(model="models/gemini-2.5-flash-native-audio"),
    )


async def call(
    session: callstate.Session,
    llm: LLMService,
    context: LLMContext,
    caller: Any,
    *,
    greets: bool,
    restored: asyncio.Event | None = None,
) -> list[str]:
    """One call: the bot greets (if ``greets``), the caller asks, the model moves the
    booking and says so; then the pipeline ends (``EndFrame``: the service hangs up).
    With ``restored``, the server first ends the connection and the caller asks again
    once the link is back (``restored`` is set on ``link.restored``).

    Returns:
        The replies, as the caller heard them.
    """
    aggregators = LLMContextAggregatorPair(context)
    recovery = PipecatRecovery(session, llm)  # callstate, line 1
    speaker = Speaker()
    pipeline = Pipeline(
        [aggregators.user(), llm, recovery.processor, speaker, aggregators.assistant()]
    )  # callstate, line 2: recovery.processor right after the LLM
    given = asyncio.Event()  # the service holds the context: tool calls can reach it

    def took(_llm: LLMService, frame: Frame) -> None:
        if isinstance(frame, LLMContextFrame):
            given.set()

    llm.add_event_handler("on_after_process_frame", took)
    params = PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE)
    worker = PipelineWorker(pipeline, params=params, enable_rtvi=False)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(30):
            await caller.wait_sessions(1)
            # hands the service the context; OpenAI's greets, Gemini's waits for the caller
            await worker.queue_frame(LLMRunFrame())
            await given.wait()
            heard = [await speaker.replies.get()] if greets else []
            await caller.user_speaks(ASK)  # the loopback server's voice detection
            heard.append(await speaker.replies.get())
            if restored is not None:
                await ask_again(caller, speaker, restored)
                heard.append(await speaker.replies.get())
            return heard
    finally:
        await worker.queue_frame(EndFrame())
        try:
            async with asyncio.timeout(10):
                await running
        except TimeoutError:
            await worker.cancel()
            await running


async def ask_again(caller: Any, speaker: Speaker, restored: asyncio.Event) -> None:
    """The connection ends (OpenAI: its 60-minute cap, ``session_expired`` then a close;
    Gemini: a dropped socket); once the link is back the caller asks again."""
    if isinstance(caller, realtime_server.RealtimeServer):
        await caller.expire()
        await restored.wait()  # the new session holds the conversation
        speaker.interrupted.clear()
        await caller.barge_in()  # the caller starts talking: the bot stops (and hears it)
        await speaker.interrupted.wait()
        await caller.current.speech_done(AGAIN, respond=True)
    else:
        await caller.drop()
        await restored.wait()
        await caller.user_speaks(AGAIN)


async def main(provider: str, *, drop: bool = False) -> None:
    move = {"booking_id": "B1", "time": "20:00"}
    server: Any
    if provider == "openai":
        transcribed = {"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
        server = realtime_server.RealtimeServer(session=transcribed)
        rt = realtime_server
        script = [rt.Say(HELLO), rt.Call("move_booking", json.dumps(move)), rt.Say(DONE)]
    else:
        server = gemini_server.GeminiServer()
        gl = gemini_server
        script = [gl.Call("move_booking", move), gl.Say(DONE)]
    link: list[str] = []  # link.lost / link.restored, as the keeper emits them
    restored = asyncio.Event()

    def on_event(event: callstate.RecoveryEvent) -> None:
        if event.kind.startswith("link."):
            link.append(event.kind)
            if event.kind == "link.restored":
                restored.set()

    keeper = callstate.Keeper("memory://", secret=SECRET, tools=tools, sinks=[on_event])
    async with server, keeper:
        session = await keeper.start(caller="+15551234567", agent="booking")
        if provider == "openai":  # the OpenAI service takes the tools from the context
            llm, context = openai_llm(server), LLMContext(tools=SCHEMA)
        else:
            llm, context = gemini_llm(server), LLMContext()
        server.queue(*script, *([server_say(provider, STILL)] if drop else []))
        heard = await call(
            session,
            llm,
            context,
            server,
            greets=provider == "openai",
            restored=restored if drop else None,
        )
        for reply in heard:
            print(f"{provider} said | {reply}")
        if drop:
            print(f"link | {', '.join(link)}")
        for c in session.state.calls.values():
            print(f"call | {c.name} {c.status}, attempts: {c.attempts}")
        print(f"owed to the model | {len(session.owed_to_model())}")
        await session.close()


def server_say(provider: str, text: str) -> Any:
    """A scripted model turn saying ``text`` on the provider's loopback server."""
    return (realtime_server if provider == "openai" else gemini_server).Say(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=["openai", "gemini"], default="openai")
    parser.add_argument("--drop", action="store_true", help="end the connection mid-call")
    args = parser.parse_args()
    asyncio.run(main(args.provider, drop=args.drop))
