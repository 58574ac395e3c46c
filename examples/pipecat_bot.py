"""A Pipecat voice bot with callstate: tool results survive barge-ins, dropped calls resume.

Give ``run_bot`` any Pipecat transport (Daily, SmallWebRTC, a telephony websocket)::

    async with callstate.Keeper("sqlite:///calls.db", secret=SECRET, tools=tools) as keeper:
        await run_bot(transport, keeper, caller="+15551234567")           # a new call
        await run_bot(transport, keeper, caller="+15551234567", resume=token)  # it dropped

Needs ``pip install "callstate[pipecat]"`` and ``OPENAI_API_KEY`` (OpenAI recognizes the
speech, runs the model and speaks). Any other Pipecat services work the same way: only
the two lines marked ``callstate`` are specific to it.
"""

from __future__ import annotations

import os
from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.llm_service import LLMService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.base_transport import BaseTransport
from pipecat.workers.runner import WorkerRunner

import callstate
from callstate.adapters.pipecat import PipecatRecovery, seed_context

SYSTEM = "You take bookings for a restaurant. Be brief: this is a phone call."

tools = callstate.ToolRegistry()
BOOKINGS: dict[str, dict[str, Any]] = {"B1": {"booking_id": "B1", "time": "19:00", "people": 2}}


@tools.tool(effect="read")
async def check_availability(time: str) -> dict[str, Any]:
    """Whether a table is free at ``time`` (HH:MM)."""
    return {"time": time, "available": time != "21:00"}


@tools.tool(effect="write", idempotent=True)
async def move_booking(booking_id: str, time: str, *, ctx: callstate.ToolContext) -> dict[str, Any]:
    """Move a booking. A real system would key the change by ``ctx.idempotency_key``."""
    BOOKINGS[booking_id] = {**BOOKINGS[booking_id], "time": time}
    return BOOKINGS[booking_id]


# what the model is told about the tools (the guard runs them; no handler here)
SCHEMA = ToolsSchema(
    standard_tools=[
        FunctionSchema(
            name="check_availability",
            description="Check whether a table is free at a time.",
            properties={"time": {"type": "string", "description": "HH:MM, 24-hour"}},
            required=["time"],
        ),
        FunctionSchema(
            name="move_booking",
            description="Move the caller's booking to another time.",
            properties={
                "booking_id": {"type": "string"},
                "time": {"type": "string", "description": "HH:MM, 24-hour"},
            },
            required=["booking_id", "time"],
        ),
    ]
)


def build_bot(
    session: callstate.Session,
    transport: BaseTransport,
    *,
    stt: Any = None,
    llm: LLMService | None = None,
    tts: Any = None,
    user_params: LLMUserAggregatorParams | None = None,
) -> tuple[PipelineWorker, PipecatRecovery]:
    """The pipeline for ``session``: a new call starts fresh, a resumed one continues."""
    key = os.environ.get("OPENAI_API_KEY", "")
    stt = stt or OpenAISTTService(api_key=key)
    # the prompt goes on the service (first in the context it is deprecated since Pipecat 1.9)
    settings = OpenAILLMService.Settings(model="gpt-4.1", system_instruction=SYSTEM)
    llm = llm or OpenAILLMService(api_key=key, settings=settings)
    tts = tts or OpenAITTSService(api_key=key, settings=OpenAITTSService.Settings(voice="alloy"))
    # the conversation so far (with a note on what happened) when the session resumed
    context = seed_context(LLMContext(tools=SCHEMA), session)
    params = user_params or LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    aggregators = LLMContextAggregatorPair(context, user_params=params)
    recovery = PipecatRecovery(session, llm)  # callstate: the tools run through the guard
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            aggregators.user(),
            llm,
            recovery.processor,  # callstate: right after the LLM
            tts,
            transport.output(),
            aggregators.assistant(),
        ]
    )
    return PipelineWorker(pipeline), recovery


async def run_bot(
    transport: BaseTransport,
    keeper: callstate.Keeper,
    *,
    caller: str,
    resume: str | None = None,
) -> callstate.Session:
    """Run one call (or the rest of a dropped one, given its resume token) to its end.

    Hand ``session.resume_token()`` to the client (or keep it by caller id, and use
    ``keeper.resume_caller``) so that it can come back if the line drops.
    """
    if resume is not None:
        session = await keeper.resume(resume, caller=caller)
    else:
        session = await keeper.start(caller=caller, agent="bookings")
    worker, _ = build_bot(session, transport)

    @transport.event_handler("on_client_connected")
    async def on_connected(transport: BaseTransport, client: Any) -> None:
        # a new caller is greeted; a resumed one hears the bot pick up where it was
        await worker.queue_frame(LLMRunFrame())

    @transport.event_handler("on_client_disconnected")
    async def on_disconnected(transport: BaseTransport, client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    await session.close()  # still resumable for the keeper's resume window
    return session
