"""A Pipecat pipeline around a realtime LLM service, pointed at a strict loopback server.

``RealtimeBot`` runs ``[user aggregator, llm, recovery.processor, output, assistant
aggregator]`` with Pipecat's own ``OpenAIRealtimeLLMService`` or
``GeminiLiveLLMService``: the service talks to ``callstate.testing.realtime_server`` /
``gemini_server`` over a real websocket; the output is the paced speaker of
``test_pipecat_harness``, so ``TTSTextFrame`` is released as its audio plays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from loguru import logger
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import EndFrame, Frame, LLMContextFrame, LLMRunFrame, TTSTextFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.llm_service import LLMService
from pipecat.utils.types import NOT_GIVEN
from pipecat.workers.runner import WorkerRunner

from callstate.adapters.pipecat import PipecatRecovery

from .test_pipecat_harness import SAMPLE_RATE, PacedOutput, Playback, Watch

SYSTEM = "You move restaurant bookings."

TOOLS = ToolsSchema(
    standard_tools=[
        FunctionSchema(
            name="move_booking",
            description="Move a booking to another time.",
            properties={"booking_id": {"type": "string"}, "time": {"type": "string"}},
            required=["booking_id", "time"],
        )
    ]
)


def openai_llm(url: str) -> LLMService:
    """Pipecat's OpenAI Realtime service, dialling the loopback server at ``url``."""
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService

    return OpenAIRealtimeLLMService(
        api_key="sk-test",
        base_url=f"{url}/realtime",
        settings=OpenAIRealtimeLLMService.Settings(system_instruction=SYSTEM),
    )


def gemini_llm(http_options: Any) -> LLMService:
    """Pipecat's Gemini Live service, dialling the loopback server."""
    from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService

    return GeminiLiveLLMService(
        api_key="test",
        http_options=http_options,
        system_instruction=SYSTEM,
        tools=TOOLS,  # tools in the context would make the service redial on the first turn
        settings=GeminiLiveLLMService.Settings(model="models/gemini-2.5-flash-native-audio"),
    )


class RealtimeBot:
    """A running pipeline: user aggregator, realtime LLM, callstate, output, assistant."""

    def __init__(self, session: Any, llm: LLMService, *, context: LLMContext | None = None) -> None:
        self.session = session
        self.llm = llm
        realtime_openai = type(llm).__name__.startswith("OpenAI")
        self.context = context or LLMContext(tools=TOOLS if realtime_openai else NOT_GIVEN)
        self.aggregators = LLMContextAggregatorPair(self.context)
        self.playback = Playback()
        self.output = PacedOutput(self.playback)
        self.recovery = PipecatRecovery(session, llm)
        self.watch = Watch()
        self.pipeline = Pipeline(
            [self.aggregators.user(), llm, self.recovery.processor, self.output,
             self.aggregators.assistant()]
        )  # fmt: skip
        self.worker = PipelineWorker(
            self.pipeline,
            params=PipelineParams(
                audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE
            ),
            observers=[self.watch],
            cancel_on_idle_timeout=False,
            enable_rtvi=False,
        )
        self._run: asyncio.Task[None] | None = None
        self.errors: list[str] = []  # what Pipecat logged at ERROR while the bot ran
        self._sink: int | None = None

    async def __aenter__(self) -> RealtimeBot:
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(worker: Any, frame: Any) -> None:
            started.set()

        self._sink = logger.add(lambda m: self.errors.append(str(m)), level="ERROR")
        given = asyncio.Event()

        def took(_llm: Any, frame: Frame) -> None:
            if isinstance(frame, LLMContextFrame):
                given.set()

        self.llm.add_event_handler("on_after_process_frame", took)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        self._run = asyncio.create_task(runner.run())
        async with asyncio.timeout(10):
            await started.wait()
            if not type(self.llm).__name__.startswith("OpenAI"):
                # as an app does on connect: Gemini's service takes the context (an empty
                # one starts no response), so the model's calls have one to go into
                await self.worker.queue_frame(LLMRunFrame())
                await given.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._run is None:
            return
        self.playback.resume()
        await self.worker.queue_frame(EndFrame())
        async with asyncio.timeout(10):
            await self._run
        self._run = None
        if self._sink is not None:
            logger.remove(self._sink)
        assert [] == self.errors, "the pipeline logged errors"

    async def until(self, check: Callable[[], bool], *, within: float = 10.0) -> None:
        """Wait until ``check()`` holds: re-checked after every frame push and every 5 ms."""
        async with asyncio.timeout(within):
            while not check():
                async with self.watch.changed:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.005):
                            await self.watch.changed.wait()

    def released(self, frame_type: type[Frame]) -> list[Frame]:
        return [f for f in self.output.released if isinstance(f, frame_type)]

    def heard(self) -> str:
        return "".join(f.text for f in self.released(TTSTextFrame))  # type: ignore[attr-defined]

    def interruptions(self) -> list[Frame]:
        from pipecat.frames.frames import InterruptionFrame

        return self.released(InterruptionFrame)

    def generated(self) -> str:
        """The text the LLM has pushed so far (as generated, played or not)."""
        from pipecat.frames.frames import LLMTextFrame

        return "".join(
            p.frame.text
            for p in self.watch.pushed
            if p.source is self.llm and isinstance(p.frame, LLMTextFrame)
        )
