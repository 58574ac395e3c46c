"""PipecatRecovery: the state a Pipecat pipeline feeds into one callstate ``Session``.

Pipecat 1.14 hooks used, all public:

- the LLM service's synchronous ``on_before_process_frame`` event: ``InterruptionFrame``
  (the barge-in is recorded before Pipecat cancels the calls it overtakes),
  ``LLMContextUserTurnFrame`` (the final user turn, as the user aggregator wrote it to
  the context), ``LLMContextFrame`` (notes on held tool results are written into the
  context right before inference) and ``StartFrame`` (to find the user aggregator and
  the output transport);
- what the LLM pushes: ``LLMFullResponseStartFrame`` / ``LLMTextFrame`` /
  ``LLMFullResponseEndFrame`` (each response is one agent utterance, with its text as
  generated) and ``FunctionCallsStartedFrame`` (which response asked for which call),
  read by the processor right after the LLM (or, placed elsewhere, from the LLM's
  ``on_before_push_frame`` event);
- the ``LLMUserAggregator``'s ``on_before_process_frame``: ``InterimTranscriptionFrame``,
  which it consumes, so it never reaches the LLM;
- the output transport's ``on_before_push_frame``: it pushes ``TTSTextFrame`` and each
  audio chunk as they play, so these are the words and the milliseconds the caller
  heard; ``LLMFullResponseEndFrame`` once a response played out; ``InterruptionFrame``;
- ``LLMService.register_function``: every tool runs through the guard;
- ``CallstateProcessor`` right after the LLM (see ``_frames.py``).

A sync event handler runs inline, in pipeline order, and never blocks: each one only
folds events into the session (the hot path does no I/O).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipecat.frames.frames import (
    Frame,
    FunctionCallResultProperties,
    FunctionCallsStartedFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMContextUserTurnFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.llm_service import FunctionCallParams, LLMService
from pipecat.transports.base_output import BaseOutputTransport

from ...errors import CallstateError, ConfigError, SessionClosed
from ...journal.context import call_output
from ...journal.state import ToolCall
from ...session import Session
from ...tools.registry import ToolOutcome
from ._frames import CallstateProcessor
from ._speech import Speech

__all__ = ["PipecatRecovery", "result_payload"]

_HOPS = 32  # how far from the LLM to look for the user aggregator and the output

Handler = Callable[[Any], None]


def dispatch(table: Sequence[tuple[type[Frame], Handler]]) -> Callable[[object, Frame], None]:
    """An event handler calling the handler for a frame's class, found once per class.

    Event handlers run for every frame that passes a processor (audio included), so
    each costs one dict lookup for the frames it does not care about. It is a plain
    function: Pipecat inspects every handler it calls, and a function is quickest.
    Other errors reach Pipecat, which logs them (a fenced session raises
    ``StaleEpochError``: another process owns the call now).
    """
    cache: dict[type, Handler | None] = {}

    def handle(_processor: object, frame: Frame) -> None:
        cls = type(frame)
        try:
            handler = cache[cls]
        except KeyError:
            handler = cache[cls] = next((h for t, h in table if issubclass(cls, t)), None)
        if handler is not None:
            try:
                handler(frame)
            except SessionClosed:
                return  # handed over or closed: this pipeline has nothing more to record

    return handle


def result_payload(outcome: ToolOutcome) -> Any:
    """What Pipecat writes into the context for an outcome: the result, or its status."""
    if outcome.status == "succeeded" and outcome.result is not None:
        return outcome.result
    payload: dict[str, Any] = {"status": outcome.status}
    if outcome.error:
        payload["error"] = outcome.error
    return payload


def _note(call: ToolCall) -> str | None:
    """A system note for the model about a result whose spoken delivery was decided."""
    what = f"{call.name} (call {call.call_id})"
    if call.delivery == "announced":
        return (
            f"The caller interrupted while {what} ran and has not heard how it ended. "
            f"Tell them now what was done: {call_output(call)}"
        )
    if call.delivery == "delivered":
        return (
            f"The caller has not heard the result of {what} yet; give it to them now: "
            f"{call_output(call)}"
        )
    if call.delivery == "discarded":
        return (
            f"The caller moved on while {what} ran; do not bring up its result unless "
            "they ask for it."
        )
    return None


def _landed_note(call: ToolCall) -> str:
    """A system note for a call this pipeline did not start, whose outcome just landed."""
    what = f"{call.name} (call {call.call_id}), started before this pipeline took the call,"
    if call.delivery == "held":
        return f"{what} has finished: {call_output(call)}"
    return (
        f"{what} has finished: {call_output(call)}. The caller has not heard this yet; tell them."
    )


class PipecatRecovery:
    """Adds callstate recovery to a Pipecat pipeline.

    Registers every tool of the keeper's ``ToolRegistry`` on ``llm`` through the guard
    and taps the frame events of the LLM, of the user aggregator before it and of the
    output transport after it. Put :attr:`processor` right after the LLM::

        recovery = PipecatRecovery(session, llm)
        pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm,
                             recovery.processor, tts, transport.output(),
                             aggregators.assistant()])

    Args:
        session: the live callstate session this pipeline speaks for.
        llm: the pipeline's LLM service.
        functions: tool names to register (default: every tool in the registry).
        async_functions: tools registered with ``cancel_on_interruption=False``: the
            model carries on while they run (Pipecat's asynchronous function calls).
        user_aggregator: the ``LLMUserAggregator`` whose transcripts to record
            (default: the first one upstream of ``llm`` when the pipeline starts).
        output: the output transport whose playback to record (default: the first
            ``BaseOutputTransport`` downstream of ``llm`` when the pipeline starts).

    Raises:
        ConfigError: a name in ``functions`` or ``async_functions`` is not a tool in the
            keeper's registry.
    """

    def __init__(
        self,
        session: Session,
        llm: LLMService,
        *,
        functions: Iterable[str] | None = None,
        async_functions: Iterable[str] = (),
        user_aggregator: LLMUserAggregator | None = None,
        output: BaseOutputTransport | None = None,
    ) -> None:
        self.session = session
        self.llm = llm
        self.speech = Speech(session)
        self.processor = CallstateProcessor(self)
        self.user_aggregator: LLMUserAggregator | None = None
        self.output: BaseOutputTransport | None = None
        self._known: set[str] = set()  # call ids run or watched by this adapter
        self._noted: set[str] = set()  # call ids whose delivery note was written
        sp = self.speech
        self.llm_out = dispatch(
            [
                (LLMTextFrame, sp.generated),
                (LLMFullResponseStartFrame, sp.response_started),
                (FunctionCallsStartedFrame, sp.calls_started),
                (LLMFullResponseEndFrame, sp.response_generated),
            ]
        )
        self._register(functions, set(async_functions))
        llm.add_event_handler(
            "on_before_process_frame",
            dispatch(
                [
                    (InterruptionFrame, sp.barge_in),
                    (LLMContextFrame, self._write_notes),
                    (LLMContextUserTurnFrame, self._user_turn),
                    (StartFrame, self._started),
                ]
            ),
        )
        if user_aggregator is not None:
            self._tap(user_aggregator)
        if output is not None:
            self._tap(output)

    def _tap(self, processor: FrameProcessor) -> None:
        if isinstance(processor, LLMUserAggregator) and self.user_aggregator is None:
            self.user_aggregator = processor
            processor.add_event_handler(
                "on_before_process_frame", dispatch([(InterimTranscriptionFrame, self._interim)])
            )
        elif isinstance(processor, BaseOutputTransport) and self.output is None:
            self.output = processor
            sp = self.speech
            processor.add_event_handler(
                "on_before_push_frame",
                dispatch(
                    [
                        (OutputAudioRawFrame, sp.played_audio),
                        (TTSTextFrame, sp.played_text),
                        (LLMFullResponseStartFrame, sp.playing_started),
                        (LLMFullResponseEndFrame, sp.playing_ended),
                        (TTSStoppedFrame, sp.speech_stopped),
                        (InterruptionFrame, lambda f: sp.barge_in(f, at_output=True)),
                    ]
                ),
            )

    def _started(self, frame: Frame) -> None:
        """The pipeline started: its transport is open, so the session leaves hold."""
        if self.session.on_hold and self.session.writable:
            self.session.connection_restored()
        self._find_neighbours(frame)

    def _find_neighbours(self, _frame: Frame) -> None:
        """Tap the first user aggregator upstream and the first output transport downstream."""
        for attr in ("previous", "next"):
            node: FrameProcessor | None = getattr(self.llm, attr)
            for _ in range(_HOPS):
                if node is None:
                    break
                if isinstance(node, LLMUserAggregator | BaseOutputTransport):
                    self._tap(node)
                    break
                node = getattr(node, attr)
        if self.processor.previous is None:
            msg = "PipecatRecovery.processor is not in the pipeline: put it right after the LLM"
            raise ConfigError(msg)  # Pipecat logs it; tool results would be lost on barge-ins
        if self.processor.previous is not self.llm:
            # not right after the LLM: read the LLM's responses from its pushes instead
            self.llm.add_event_handler("on_before_push_frame", self.llm_out)

    # -- function handlers through the guard --------------------------------------------

    def _register(self, functions: Iterable[str] | None, async_functions: set[str]) -> None:
        tools = self.session.keeper.tools
        names = sorted(tools.names()) if tools is not None else []
        wanted = list(functions) if functions is not None else names
        for name in [*wanted, *sorted(async_functions)]:
            if name not in names:
                msg = f"function {name!r} is not a tool in the keeper's registry (known: {names})"
                raise ConfigError(msg)
        for name in wanted:
            self.llm.register_function(
                name, self._handler(name), cancel_on_interruption=name not in async_functions
            )

    def _handler(self, name: str) -> Any:
        async def handle(params: FunctionCallParams) -> None:
            call_id = params.tool_call_id
            self._known.add(call_id)
            run = asyncio.ensure_future(
                self.session.run_tool(
                    name,
                    dict(params.arguments),
                    call_id=call_id,
                    utterance_id=self.speech.call_utterance.get(call_id),
                )
            )
            try:
                outcome = await asyncio.shield(run)
            except asyncio.CancelledError:
                # Pipecat gave up on the call (a barge-in, its timeout) but the guard did
                # not: the processor delivers the outcome when the call ends
                self.processor.detach(call_id, name, params.arguments, run)
                raise
            self._call_ended(call_id)
            self.processor.forget(call_id)
            props = FunctionCallResultProperties(run_llm=False) if self._held(call_id) else None
            await params.result_callback(result_payload(outcome), properties=props)

        handle.__name__ = f"callstate_{name}"
        return handle

    def _held(self, call_id: str) -> bool:
        """True while the result's spoken delivery waits for the caller (or was dropped):
        the model must not run on it now; the caller's turn brings the next inference."""
        call = self.session.state.calls.get(call_id)
        return call is not None and call.delivery in ("held", "discarded")

    def late_result(self, call_id: str, run: asyncio.Future[ToolOutcome]) -> tuple[Any, bool]:
        """Payload and ``run_llm`` for the outcome of a detached call."""
        self._call_ended(call_id)
        if run.cancelled():
            error = "the call was cut off before its outcome was known"
            return {"status": "unknown", "error": error}, False
        exc = run.exception()
        if exc is not None:
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, True
        return result_payload(run.result()), not self._held(call_id)

    def _call_ended(self, call_id: str) -> None:
        self.speech.call_ended(call_id)

    # -- calls this pipeline did not start -------------------------------------------------

    async def watch_inherited(self) -> None:
        """Land the outcomes of calls open when this pipeline took the session over.

        In-doubt calls a resume re-runs here are awaited through the guard (a repeated
        call id waits for the running call); calls still running in a handoff's source
        land in this session later, announced by a ``result.held`` event.
        """
        pending = {c.call_id for c in self.session.state.in_flight} - self._known
        if not pending:
            return
        self._known |= pending
        stream = self.session.keeper.events()  # subscribed before looking, so none is missed
        try:
            await asyncio.gather(*(self._await_here(cid) for cid in sorted(pending)))
            left = {cid for cid in pending if self._call(cid) is None}
            while left:
                for cid in sorted(left):
                    call = self._call(cid)
                    if call is not None:
                        left.discard(cid)
                        await self._landed(call)
                if left:
                    await anext(stream)  # something happened: look again
        finally:
            await stream.aclose()

    def _call(self, call_id: str) -> ToolCall | None:
        """The call, once it has its outcome."""
        call = self.session.state.calls.get(call_id)
        return call if call is not None and call.terminal else None

    async def _await_here(self, call_id: str) -> None:
        call = self.session.state.calls[call_id]
        try:
            await self.session.run_tool(call.name, dict(call.args), call_id=call_id)
        except CallstateError:
            return  # this handle may no longer record; the outcome lands on the next one
        landed = self._call(call_id)
        if landed is not None:
            await self._landed(landed)

    async def _landed(self, call: ToolCall) -> None:
        await self.processor.append(_landed_note(call), run_llm=call.delivery != "held")

    # -- the caller and the model ------------------------------------------------------------

    def _user_turn(self, frame: LLMContextUserTurnFrame) -> None:
        if frame.text.strip():
            self.session.user_said(frame.text)

    def _interim(self, frame: InterimTranscriptionFrame) -> None:
        if frame.text.strip():
            self.session.user_partial(frame.text)

    def _write_notes(self, frame: LLMContextFrame) -> None:
        """Tell the model, before it runs, which held results it must (not) voice."""
        context: LLMContext = frame.context
        for call in self.session.state.calls.values():
            if call.call_id in self._noted or call.call_id not in self._known:
                continue
            note = _note(call)
            if note is not None:
                self._noted.add(call.call_id)
                context.add_message({"role": "system", "content": note})
