"""The processor and the observer a Pipecat pipeline carries for callstate.

``CallstateProcessor`` sits right after the output transport, so it sees the frames the
transport releases as their audio plays: played text, played audio, the end of each
response. It also mends the function-call frames on their way to the assistant
aggregator: a call Pipecat cancelled on a barge-in keeps running in the guard, so its
``FunctionCallCancelFrame`` is held back and a ``FunctionCallResultFrame`` carrying the
real outcome is pushed in its place once the call ends.

``CallstateObserver`` sees what never reaches the LLM: interim transcripts (the user
aggregator consumes them) and, as a backstop, the user turns the aggregator wrote.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipecat.frames.frames import (
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextUserTurnFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from ...tools import ToolOutcome

if TYPE_CHECKING:
    from ._recovery import PipecatRecovery

__all__ = ["CallstateObserver", "CallstateProcessor"]

_DOWN = FrameDirection.DOWNSTREAM


@dataclass(slots=True)
class _Detached:
    """A call Pipecat cancelled while the guard still runs it."""

    name: str
    arguments: Any
    run: asyncio.Future[ToolOutcome]
    announced: bool = False  # its FunctionCallInProgressFrame passed this processor


class CallstateProcessor(FrameProcessor):
    """Records speech as played and keeps tool results from being lost on a barge-in.

    Place it right after ``transport.output()``, before the assistant aggregator.
    It processes frames inline (direct mode), in the order the transport releases them.
    """

    def __init__(self, recovery: PipecatRecovery, **kwargs: Any) -> None:
        super().__init__(enable_direct_mode=True, **kwargs)
        self._recovery = recovery
        self._detached: dict[str, _Detached] = {}
        self._announced: set[str] = set()
        self._watch: asyncio.Task[None] | None = None

    async def cleanup(self) -> None:
        """Stop watching calls when the pipeline ends (the calls themselves run on)."""
        await super().cleanup()
        if self._watch is not None:
            await self.cancel_task(self._watch)
            self._watch = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Record what the frame says about speech, then pass it on (or hold it back)."""
        await super().process_frame(frame, direction)
        r = self._recovery
        if isinstance(frame, StartFrame) and self._watch is None:
            await self.push_frame(frame, direction)
            self._watch = self.create_task(r._watch(), "callstate-watch")
            return
        if direction is _DOWN:
            if isinstance(frame, OutputAudioRawFrame):
                r._played_audio(frame)
            elif isinstance(frame, TTSTextFrame):
                r._played_text(frame)
            elif isinstance(frame, LLMFullResponseStartFrame):
                r._playing_started(frame)
            elif isinstance(frame, LLMFullResponseEndFrame):
                r._playing_ended()
            elif isinstance(frame, TTSStoppedFrame):
                r._speech_stopped()
            elif isinstance(frame, InterruptionFrame):
                r._barge_in(frame, at_output=True)
            elif isinstance(frame, FunctionCallInProgressFrame):
                await self.push_frame(frame, direction)
                await self._announce(frame.tool_call_id)
                return
            elif (
                isinstance(frame, FunctionCallCancelFrame) and frame.tool_call_id in self._detached
            ):
                return  # the call runs on in the guard: its real outcome follows
        await self.push_frame(frame, direction)

    async def append(self, note: str, *, run_llm: bool) -> None:
        """Write a system note into the context, safe from interruptions."""
        frame = LLMMessagesAppendFrame([{"role": "system", "content": note}], run_llm=run_llm)
        frame.interruptible = False
        await self.push_frame(frame, _DOWN)

    # -- calls Pipecat cancelled ------------------------------------------------------------

    def detach(
        self, call_id: str, name: str, arguments: Any, run: asyncio.Future[ToolOutcome]
    ) -> None:
        """Take over delivering the outcome of a call whose Pipecat handler was cancelled."""
        self._detached[call_id] = _Detached(
            name=name, arguments=arguments, run=run, announced=call_id in self._announced
        )
        run.add_done_callback(lambda _: self._schedule(call_id))

    async def _announce(self, call_id: str) -> None:
        self._announced.add(call_id)
        d = self._detached.get(call_id)
        if d is not None:
            d.announced = True
            if d.run.done():
                await self._deliver(call_id)

    def _schedule(self, call_id: str) -> None:
        d = self._detached.get(call_id)
        if d is not None and d.announced:
            self.create_task(self._deliver(call_id), f"callstate-deliver-{call_id}")

    async def _deliver(self, call_id: str) -> None:
        """Push the outcome where Pipecat's aggregator expects the call's result."""
        d = self._detached.pop(call_id, None)
        if d is None:
            return
        self._announced.discard(call_id)
        payload, run_llm = self._recovery._late_result(call_id, d.run)
        frame = FunctionCallResultFrame(
            function_name=d.name,
            tool_call_id=call_id,
            arguments=d.arguments,
            result=payload,
            run_llm=run_llm,
        )
        await self.push_frame(frame, _DOWN)


class CallstateObserver(BaseObserver):
    """Records interim transcripts, which the user aggregator consumes before the LLM."""

    def __init__(self, recovery: PipecatRecovery) -> None:
        super().__init__(observe_every_push=False)
        self._recovery = recovery

    async def on_push_frame(self, data: FramePushed) -> None:
        """Record interim transcripts and, as a backstop, user turns written to the context."""
        frame = data.frame
        if isinstance(frame, InterimTranscriptionFrame | LLMContextUserTurnFrame):
            self._recovery._observed(frame, data.timestamp)
