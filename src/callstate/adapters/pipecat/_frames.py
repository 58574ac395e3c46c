"""The processor a Pipecat pipeline carries for callstate, right after the LLM.

It mends the function-call frames on their way to the assistant aggregator: a call
Pipecat cancelled on a barge-in keeps running in the guard, so its
``FunctionCallCancelFrame`` is held back and a ``FunctionCallResultFrame`` carrying the
real outcome is pushed in its place once the call ends (never ``"CANCELLED"``, never a
call left ``"IN_PROGRESS"``). It also writes notes into the context
(``LLMMessagesAppendFrame``, uninterruptible) for results of calls this pipeline did
not start.

It processes frames inline (direct mode): no queue and no task of its own. Placed
right after the LLM it sees the LLM's frames only, not the audio.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    FrameProcessorPauseFrame,
    FrameProcessorPauseUrgentFrame,
    FrameProcessorResumeFrame,
    FrameProcessorResumeUrgentFrame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMServiceMetadataFrame,
    LLMTextFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup

from ...observe import parents
from ...observe.parents import Parent
from ...tools.registry import ToolOutcome
from ._notes import note_message
from ._tracing import trace_parent


class Recovery(Protocol):
    """What the processor needs of the ``PipecatRecovery`` that placed it."""

    @property
    def llm(self) -> Any: ...

    @property
    def session(self) -> Any: ...

    @property
    def realtime(self) -> bool: ...

    def llm_out(self, processor: FrameProcessor, frame: Frame) -> None: ...

    def attach(self) -> None: ...

    async def detach_outcomes(self) -> None: ...

    def delivered(self, call_id: str) -> None: ...

    def late_result(self, call_id: str, run: asyncio.Future[ToolOutcome]) -> tuple[Any, bool]: ...

    def late_note(self, call_id: str, payload: Any, *, held: bool) -> str: ...

    async def settled(self) -> None: ...


__all__ = ["CallstateProcessor"]

_DOWN = FrameDirection.DOWNSTREAM

#: Frames this processor acts on, or that a processor's own lifecycle needs; every other
#: frame (audio above all) is handed straight on, as if the processor were not there.
_HANDLED: tuple[type[Frame], ...] = (
    StartFrame,
    EndFrame,
    CancelFrame,
    InterruptionFrame,
    FrameProcessorPauseFrame,
    FrameProcessorPauseUrgentFrame,
    FrameProcessorResumeFrame,
    FrameProcessorResumeUrgentFrame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallsStartedFrame,
    LLMFullResponseStartFrame,
    LLMFullResponseEndFrame,
    LLMServiceMetadataFrame,
    LLMTextFrame,
)


@dataclass(slots=True)
class _Detached:
    """A call Pipecat cancelled while the guard still runs it."""

    name: str
    arguments: Any
    run: asyncio.Future[ToolOutcome]
    announced: bool = False  # its FunctionCallInProgressFrame passed this processor


class CallstateProcessor(FrameProcessor):
    """Keeps tool results from being lost on a barge-in.

    Place it right after the LLM service (anywhere between the LLM and the assistant
    aggregator works; right after the LLM the fewest frames pass through it).
    """

    def __init__(self, recovery: Recovery, **kwargs: Any) -> None:
        super().__init__(enable_direct_mode=True, **kwargs)
        self._recovery = recovery
        self._detached: dict[str, _Detached] = {}
        self._announced: set[str] = set()
        # calls whose FunctionCallCancelFrame is still to come: it is dropped even when
        # the outcome went out first (the cancel, a system frame, would overtake it)
        self._cancel_pending: set[str] = set()
        self._attached = False
        self._handled: dict[type, bool] = {}
        self._running = True
        self._trace_parent: Parent | None = None

    async def queue_frame(
        self, frame: Frame, direction: FrameDirection = _DOWN, callback: Any = None
    ) -> None:
        """Hand a frame this processor has no business with straight to its neighbour.

        Every frame an LLM pushes passes here, the caller's audio included; going
        through the whole processing path would cost each of them a hop of bookkeeping.
        """
        cls = type(frame)
        handled = self._handled.get(cls)
        if handled is None:
            handled = self._handled[cls] = issubclass(cls, _HANDLED)
        neighbour = self.next if direction is _DOWN else self.previous
        if handled or callback is not None or neighbour is None:
            await super().queue_frame(frame, direction, callback)
        else:
            await neighbour.queue_frame(frame, direction)

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        """Join Pipecat's trace: spans of this session go under its conversation/turns."""
        await super().setup(setup)
        self._trace_parent = trace_parent(setup.tracing_context)
        if self._trace_parent is not None:
            parents.register(self._recovery.session.id, self._trace_parent)

    async def cleanup(self) -> None:
        """Stop delivering outcomes when the pipeline ends (the calls themselves run on)."""
        if self._trace_parent is not None:
            parents.forget(self._recovery.session.id, self._trace_parent)
        await super().cleanup()
        self._running = False
        await self._recovery.detach_outcomes()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Pass the frame on, or hold back the cancellation of a call that runs on."""
        await super().process_frame(frame, direction)
        if direction is _DOWN:
            if self.previous is self._recovery.llm:
                self._recovery.llm_out(self, frame)  # the LLM's responses, in its order
            if isinstance(frame, FunctionCallInProgressFrame):
                await self.push_frame(frame, direction)
                await self._announce(frame.tool_call_id)
                return
            if (
                isinstance(frame, FunctionCallCancelFrame)
                and frame.tool_call_id in self._cancel_pending
            ):
                self._cancel_pending.discard(frame.tool_call_id)
                return  # the call ran on in the guard: its real outcome is (or will be) sent
            if isinstance(frame, StartFrame) and not self._attached:
                await self.push_frame(frame, direction)
                self._attached = True
                self._recovery.attach()  # the pipeline is up: owed outcomes can go in
                return
        await self.push_frame(frame, direction)

    async def append(self, note: str, *, run_llm: bool) -> None:
        """Write a system note into the context, safe from interruptions.

        A realtime LLM keeps the conversation on its server and takes in only what it
        processes itself, so there the note goes into the LLM, which sends it on.
        """
        if self._recovery.realtime:
            await self._recovery.settled()  # a redial under way: it goes into the new session
        # a realtime service keeps the turns on its server: its context may hold nothing yet
        message = note_message(note, first=self._recovery.realtime)
        frame = LLMMessagesAppendFrame([message], run_llm=run_llm)
        frame.interruptible = False
        if self._recovery.realtime:
            await self._recovery.llm.queue_frame(frame, _DOWN)
        else:
            await self.push_frame(frame, _DOWN)

    # -- calls Pipecat cancelled ------------------------------------------------------------

    def detach(
        self, call_id: str, name: str, arguments: Any, run: asyncio.Future[ToolOutcome]
    ) -> None:
        """Take over delivering the outcome of a call whose Pipecat handler was cancelled."""
        self._cancel_pending.add(call_id)
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

    def detached(self, call_id: str) -> bool:
        """True while this processor, not the call's handler, delivers its outcome."""
        return call_id in self._detached

    def forget(self, call_id: str) -> None:
        """The call ended with Pipecat still waiting for it: nothing to deliver here."""
        self._announced.discard(call_id)

    def _schedule(self, call_id: str) -> None:
        d = self._detached.get(call_id)
        # once the pipeline is gone the outcome stays in the session (and its next plan)
        if d is not None and d.announced and self._running:
            self.create_task(self._deliver(call_id), f"callstate-deliver-{call_id}")

    async def _deliver(self, call_id: str) -> None:
        """Push the outcome where Pipecat's aggregator expects the call's result."""
        d = self._detached.pop(call_id, None)
        if d is None:
            return
        self._announced.discard(call_id)
        payload, run_llm = self._recovery.late_result(call_id, d.run)
        if self._recovery.realtime:
            # the provider settled the call on the wire (OpenAI sent "CANCELLED", Gemini
            # cancelled it itself): the real outcome reaches the model as a note
            note = self._recovery.late_note(call_id, payload, held=not run_llm)
            await self.append(note, run_llm=run_llm)
            self._recovery.delivered(call_id)
            return
        frame = FunctionCallResultFrame(
            function_name=d.name,
            tool_call_id=call_id,
            arguments=d.arguments,
            result=payload,
            run_llm=run_llm,
        )
        await self.push_frame(frame, _DOWN)
        self._recovery.delivered(call_id)
