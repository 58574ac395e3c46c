"""Pipecat adapter benchmark: frames per second through a pipeline, with and without callstate.

One pipeline, built from Pipecat's own classes, runs a scripted call as fast as it can:
each turn the caller's microphone sends a second of audio (50 frames of 20 ms), interim
and final transcripts, and the scripted LLM streams a three-sentence reply that a tone
TTS voices and the output transport "plays" (writes to a buffer, unpaced); every fourth
turn the reply also calls a tool. The same workload runs on the plain pipeline and on
the pipeline with ``PipecatRecovery`` (its hooks on the LLM, the user aggregator and
the output transport, the processor right after the LLM, function calls through the
guard, a live session on the memory store with its flusher running). Rounds alternate between the two::

    python bench/bench_pipecat.py
    python bench/bench_pipecat.py --turns 100 --rounds 30

Frames are counted as the assistant aggregator (the pipeline's last processor) takes
them, over wall-clock time and over the process's CPU time (the pipeline is one
process; CPU time is what the adapter adds, undisturbed by other load on the machine).
Each figure is the best of the rounds (the ``*_median_pct`` lines compare medians).
Target: ``adapter_overhead_cpu_pct`` <= 10.
Every metric is printed on its own line as ``name value``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import struct
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams, LLMService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.turns.user_start import ExternalUserTurnStartStrategy
from pipecat.turns.user_stop import ExternalUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

import callstate
from callstate.adapters.pipecat import PipecatRecovery

RATE = 16_000
REPLY = "Sure, I can help with that. Let me check the booking for tonight. It is all set now."
TOOL_EVERY = 4


class Source(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class LLM(LLMService):
    """Streams ``REPLY`` word by word; every ``TOOL_EVERY``-th reply also calls a tool."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.turns = 0  # replies to the caller (not to a tool result)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        last = frame.context.messages[-1] if frame.context.messages else {}
        await self.push_frame(LLMFullResponseStartFrame())
        if isinstance(last, dict) and last.get("role") == "tool":
            await self._push_llm_text("Done. ")
        else:
            self.turns += 1
            for word in REPLY.split():
                await self._push_llm_text(word + " ")
            if self.turns % TOOL_EVERY == 0:
                call = FunctionCallFromLLM(
                    function_name="check_booking",
                    tool_call_id=f"call{self.turns}",
                    arguments={"booking_id": "B1"},
                    context=frame.context,
                )
                await self.run_function_calls([call])
        await self.push_frame(LLMFullResponseEndFrame())


def tone(ms: int) -> bytes:
    n = RATE * ms // 1000
    return struct.pack(f"<{n}h", *(int(6000 * math.sin(i * 0.0864)) for i in range(n)))


class TTS(TTSService):
    """200 ms of tone per word."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)
        self._word = tone(200)

    async def run_tts(self, text: str, context_id: str) -> AsyncIterator[Frame]:
        audio = self._word * len(text.split())
        yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)


class Output(BaseOutputTransport):
    """Plays audio into a counter, as fast as it comes."""

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=RATE))
        self.played = 0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: Any) -> bool:
        self.played += len(frame.audio)
        await asyncio.sleep(0)
        return True


def tools() -> callstate.ToolRegistry:
    registry = callstate.ToolRegistry()

    @registry.tool(effect="read")
    async def check_booking(booking_id: str) -> dict[str, Any]:
        return {"booking_id": booking_id, "time": "20:00"}

    return registry


async def run(turns: int, *, adapter: bool) -> tuple[int, float, float]:
    """Run ``turns`` turns; return (frames the last processor took, wall s, CPU s)."""
    async with callstate.Keeper("memory://", tools=tools()) as keeper:
        session = await keeper.start()
        context = LLMContext([{"role": "system", "content": "You book tables."}])
        params = LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(
                start=[ExternalUserTurnStartStrategy()],
                stop=[ExternalUserTurnStopStrategy(timeout=0.0)],
            )
        )
        pair = LLMContextAggregatorPair(context, user_params=params)
        llm = LLM()
        source, output = Source(), Output()
        middle: list[FrameProcessor] = []
        if adapter:
            recovery = PipecatRecovery(session, llm)
            middle = [recovery.processor]
        else:

            async def check_booking(params: FunctionCallParams) -> None:
                await params.result_callback({"booking_id": "B1", "time": "20:00"})

            llm.register_function("check_booking", check_booking)
        pipeline = Pipeline([source, pair.user(), llm, *middle, TTS(), output, pair.assistant()])
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            cancel_on_idle_timeout=False,
            enable_rtvi=False,
        )
        taken = 0
        ended = asyncio.Event()

        def count(_processor: object, frame: Frame) -> None:
            nonlocal taken
            taken += 1
            if isinstance(frame, LLMFullResponseEndFrame):
                ended.set()

        pair.assistant().add_event_handler("on_before_process_frame", count)
        started = asyncio.Event()

        @worker.event_handler("on_pipeline_started")
        async def _started(_worker: Any, _frame: Any) -> None:
            started.set()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        task = asyncio.create_task(runner.run())
        await started.wait()
        mic = tone(20)
        t0, c0 = time.perf_counter(), time.process_time()
        for turn in range(turns):
            frames: list[Frame] = [ProposedUserStartedSpeakingFrame()]
            frames += [InputAudioRawFrame(mic, RATE, 1) for _ in range(50)]
            frames += [InterimTranscriptionFrame(w, "caller", "now") for w in ("a", "a table")]
            frames += [TranscriptionFrame(f"a table for two, turn {turn}", "caller", "now")]
            frames.append(ProposedUserStoppedSpeakingFrame())
            ended.clear()
            for frame in frames:
                await source.queue_frame(frame)
            await ended.wait()
            if (turn + 1) % TOOL_EVERY == 0:  # the tool result runs one more short reply
                ended.clear()
                await ended.wait()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        await worker.queue_frame(EndFrame())
        await task
        if adapter:
            await session.flush()
            if session.state.turn != turns:  # the adapter must have recorded every turn
                msg = f"recorded {session.state.turn} user turns of {turns}"
                raise RuntimeError(msg)
        return taken, elapsed, cpu


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30, help="turns per run")
    parser.add_argument("--rounds", type=int, default=20, help="runs of each pipeline")
    args = parser.parse_args(argv)
    logger.remove()  # Pipecat logs every frame at debug level: measure the pipeline, not logs
    await run(2, adapter=True)  # warm up imports and first-call paths
    runs: dict[bool, list[tuple[int, float, float]]] = {False: [], True: []}
    for _ in range(args.rounds):  # interleaved, so both see the same machine load
        for adapter in (False, True):
            runs[adapter].append(await run(args.turns, adapter=adapter))

    print(f"turns {args.turns}")
    print(f"rounds {args.rounds}")
    print(f"frames_per_run {runs[False][0][0]}")
    for clock, column in (("wall", 1), ("cpu", 2)):
        rates = {a: sorted(r[0] / r[column] for r in runs[a]) for a in runs}
        # best of the rounds: the run least disturbed by anything else on the machine
        plain, with_adapter = rates[False][-1], rates[True][-1]
        print(f"plain_frames_per_{clock}_s {plain:.0f}")
        print(f"adapter_frames_per_{clock}_s {with_adapter:.0f}")
        print(f"adapter_overhead_{clock}_pct {100.0 * (plain - with_adapter) / plain:.1f}")
        mid_plain, mid_adapter = statistics.median(rates[False]), statistics.median(rates[True])
        pct = 100.0 * (mid_plain - mid_adapter) / mid_plain
        print(f"adapter_overhead_{clock}_median_pct {pct:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
