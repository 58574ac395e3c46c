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
import json
import logging
from collections.abc import Callable, Iterable, Mapping
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
    LLMServiceMetadataFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    StartFrame,
    TranscriptionFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.llm_service import FunctionCallParams, LLMService
from pipecat.transports.base_output import BaseOutputTransport

from ...errors import ConfigError
from ...session import Session
from ...tools.registry import ToolOutcome
from .._held import open_link
from ._caller import CallerWords
from ._dispatch import dispatch
from ._frames import CallstateProcessor
from ._notes import delivery_note, landed_note
from ._redial import redial_for
from ._speech import Speech

__all__ = ["PipecatRecovery", "result_payload"]

_HOPS = 32  # how far from the LLM to look for the user aggregator and the output
_VIA = "pipecat"

log = logging.getLogger("callstate.adapters.pipecat")


def result_payload(outcome: ToolOutcome) -> Any:
    """What Pipecat writes into the context for an outcome: the result, or its status."""
    if outcome.status == "succeeded" and outcome.result is not None:
        return outcome.result
    payload: dict[str, Any] = {"status": outcome.status}
    if outcome.error:
        payload["error"] = outcome.error
    return payload


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
        max_session_s, rollover_margin_s: with ``OpenAIRealtimeLLMService``, the
            provider's cap on one Realtime session, and how long before it the call
            moves to a new session at a quiet moment (``session_expired`` is handled
            whenever it comes).

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
        max_session_s: float = 3600.0,
        rollover_margin_s: float = 300.0,
    ) -> None:
        self.session = session
        self.llm = llm
        self.speech = Speech(session)
        self.processor = CallstateProcessor(self)
        self.user_aggregator: LLMUserAggregator | None = None
        self.output: BaseOutputTransport | None = None
        self._known: set[str] = set()  # call ids run or watched by this adapter
        self._noted: set[str] = set()  # call ids whose delivery note was written
        self._own: set[str] = set()  # calls whose handler here delivers the outcome
        self._landing: list[str] = []  # landed outcomes of other calls, to write as notes
        self._writer: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._fenced_said = False
        self._say: str | None = None  # held speech to ask of the model once attached
        #: the LLM is a realtime (speech-to-speech) service: its conversation lives on
        #: the provider's server, so notes and late outcomes go into the LLM itself
        self.realtime = False
        sp = self.speech
        self.llm_out = dispatch(
            [
                (LLMTextFrame, sp.generated),
                (LLMFullResponseStartFrame, self._response_started),
                (FunctionCallsStartedFrame, sp.calls_started),
                (LLMFullResponseEndFrame, sp.response_generated),
                (LLMServiceMetadataFrame, self._metadata),
            ],
            self.live,
        )
        #: reopens Pipecat's OpenAI Realtime connection after a drop or the cap
        self.redial = redial_for(self, llm, cap_s=(max_session_s, rollover_margin_s))
        self._async_functions = set(async_functions)
        self._register(functions, self._async_functions)
        llm.add_event_handler(
            "on_before_process_frame",
            dispatch(
                [
                    (InterruptionFrame, sp.barge_in),
                    (LLMContextFrame, self._write_notes),
                    (LLMContextUserTurnFrame, self._user_turn),
                    (StartFrame, self._started),
                ],
                self.live,
            ),
        )
        whole = self.redial is not None and self.redial.whole_transcripts
        self.caller = CallerWords(session, whole=whole)
        llm.add_event_handler(
            "on_before_push_frame", dispatch([(TranscriptionFrame, self._said)], self.live)
        )
        if user_aggregator is not None:
            self._tap(user_aggregator)
        if output is not None:
            self._tap(output)

    def _tap(self, processor: FrameProcessor) -> None:
        if isinstance(processor, LLMUserAggregator) and self.user_aggregator is None:
            self.user_aggregator = processor
            processor.add_event_handler(
                "on_before_process_frame",
                dispatch([(InterimTranscriptionFrame, self._interim)], self.live),
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
                        (LLMFullResponseEndFrame, self._played_out),
                        (TTSStoppedFrame, sp.speech_stopped),
                        (InterruptionFrame, lambda f: sp.barge_in(f, at_output=True)),
                    ],
                    self.live,
                ),
            )

    def live(self) -> bool:
        """False once the session was fenced (a newer owner took the call): from then on
        this pipeline records nothing and passes its frames on untouched. Logs it once;
        the app should stop the pipeline (``session.wait_fenced()``)."""
        if not self.session.fenced:
            return True
        if not self._fenced_said:
            self._fenced_said = True
            log.warning(
                "session %s was fenced (%s); this pipeline records nothing more: stop it",
                self.session.id,
                self.session.error,
            )
        return False

    def _metadata(self, frame: LLMServiceMetadataFrame) -> None:
        if frame.is_realtime_service:
            self.realtime = True

    def _started(self, frame: Frame) -> None:
        """The pipeline started: its transport is open, so the session leaves hold; the
        speech it held (here or on the worker the call was resumed from) is said next."""
        kept, self._say = open_link(self.session)
        for entry in kept:
            log.warning("callstate: an outbox entry the pipeline cannot send: %r", entry)
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
        if not self.llm.has_function(None):  # type: ignore[arg-type]  # None: the catch-all
            # names nobody registered are journaled as failed calls, not answered by Pipecat
            self.llm.register_function(None, self._handler(None, offered=frozenset(wanted)))

    def _handler(self, name: str | None, *, offered: frozenset[str] | None = None) -> Any:
        async def handle(params: FunctionCallParams) -> None:
            call_id = params.tool_call_id
            if not self.live():
                return  # another owner has the call: this pipeline must not run tools
            tool = name if name is not None else params.function_name
            self.caller.turn_ended()  # what the caller said comes before the model's call
            self._known.add(call_id)
            self._own.add(call_id)
            raw = params.arguments
            # arguments Pipecat parsed to something else than an object go to the guard
            # as JSON text: a failed call, journaled with the reason
            args = dict(raw) if isinstance(raw, Mapping) else json.dumps(raw)
            run = asyncio.ensure_future(
                self.session.run_tool(
                    tool,
                    args,
                    call_id=call_id,
                    utterance_id=self.speech.call_utterance.get(call_id),
                    offered=offered,
                )
            )
            try:
                outcome = await asyncio.shield(run)
                await self.settled()  # a redial under way: answer in the new session
            except asyncio.CancelledError:
                # Pipecat gave up on the call (a barge-in, its timeout) but the guard did
                # not: the processor delivers the outcome when the call ends
                self.processor.detach(call_id, tool, params.arguments, run)
                raise
            self._call_ended(call_id)
            self.processor.forget(call_id)
            self._known.add(outcome.call_id)  # ``id#n`` when the model reused the id
            held = self._held(outcome.call_id)
            if self._cancelled_on_wire(outcome.call_id, tool):
                note = self.late_note(call_id, result_payload(outcome), held=held)
                await self.processor.append(note, run_llm=not held)
                self.delivered(call_id)
                return
            props = FunctionCallResultProperties(run_llm=False) if held else None
            await params.result_callback(result_payload(outcome), properties=props)
            self.delivered(call_id)

        handle.__name__ = f"callstate_{name or 'unknown'}"
        return handle

    def _cancelled_on_wire(self, call_id: str, tool: str) -> bool:
        """A realtime provider dropped the call on a barge-in while Pipecat kept waiting
        for it (Gemini's ``toolCallCancellation``, which Pipecat does not act on): a
        result sent as the call's response would be refused, so it goes in as a note."""
        call = self.session.state.calls.get(call_id)
        return (
            self.realtime
            and tool not in self._async_functions
            and call is not None
            and call.overtaken
        )

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
        outcome = run.result()
        self._known.add(outcome.call_id)
        return result_payload(outcome), not self._held(outcome.call_id)

    def late_note(self, call_id: str, payload: Any, *, held: bool) -> str:
        """The note giving a realtime model the outcome of a call it saw cancelled."""
        call = self.session.state.calls.get(call_id)
        name = call.name if call is not None else "a tool"
        what = f"{name} (call {call_id}) went on after the caller interrupted and has finished"
        result = json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str)
        if held:
            return f"{what}: {result}. The caller is still talking; tell them once they finish."
        return f"{what}: {result}. The caller has not heard this yet; tell them."

    def _call_ended(self, call_id: str) -> None:
        self.speech.call_ended(call_id)
        self._changed()

    def _changed(self, _frame: object = None) -> None:
        if self.redial is not None:
            self.redial.changed()

    async def settled(self) -> None:
        """Return once the LLM's connection is up (at once unless a redial is under way)."""
        if self.redial is not None:
            await self.redial.settled()

    def running_here(self) -> list[str]:
        """Calls whose handler in this pipeline will answer them on the wire."""
        return [c for c in self._own if not self.processor.detached(c)]

    def quiet(self) -> bool:
        """Nothing is being said and no call of this pipeline runs: a moment to move."""
        return not self.speech.speaking and not self.running_here()

    def say(self, instruction: str) -> None:
        """Have the model say something now (speech the caller never heard)."""
        self.processor.create_task(
            self.processor.append(instruction, run_llm=True), "callstate-say"
        )

    def delivered(self, call_id: str) -> None:
        """The call's outcome is in the context now: no longer owed to the model."""
        self._own.discard(call_id)
        if call_id in self.session.state.calls:
            self.session.given_to_model(call_id, via=_VIA)

    # -- outcomes this pipeline's handlers do not deliver --------------------------------

    def attach(self) -> None:
        """Deliver into the context every outcome owed to the model, now and as they land.

        Called once the pipeline started. Subscribing replays what is owed first, so a
        call a resume re-ran, or one still running in a handoff's source, reaches the
        model however early or late it ends: each becomes a system note in the context
        (uninterruptible; inference runs on it unless its spoken delivery is held).
        """
        if self._unsubscribe is not None:
            return
        self._known |= {c.call_id for c in self.session.state.in_flight}
        self._unsubscribe = self.session.on_outcome(self._outcome_landed, owed=True)
        say, self._say = self._say, None
        if say is not None:  # the caller never heard it: the model says it, as it plays
            self.say(say)

    async def detach_outcomes(self) -> None:
        """Stop delivering outcomes (the pipeline ended); what is left stays owed."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._landing.clear()
        if self._writer is not None and not self._writer.done():
            await self.processor.cancel_task(self._writer)
        self._writer = None

    def _outcome_landed(self, outcome: ToolOutcome) -> None:
        call_id = outcome.call_id
        if call_id in self._own or call_id in self._landing:
            return  # this pipeline's handler delivers it as the call's result
        self._landing.append(call_id)
        if self._writer is None or self._writer.done():
            self._writer = self.processor.create_task(self._write_landed(), "callstate-landed")

    async def _write_landed(self) -> None:
        while self._landing:
            call_id = self._landing.pop(0)
            call = self.session.state.calls.get(call_id)
            owed = call_id in self.session.state.owed_to_model
            if call is None or not owed or call_id in self._own or not self.live():
                continue
            self._known.add(call_id)
            await self.processor.append(landed_note(call), run_llm=call.delivery != "held")
            self.session.given_to_model(call_id, via=_VIA)

    # -- the caller and the model ------------------------------------------------------------

    def _user_turn(self, frame: LLMContextUserTurnFrame) -> None:
        if self.realtime:  # the service's own transcript is the turn (see _caller.py)
            self.caller.turn_ended()
        elif frame.text.strip():
            self.session.user_said(frame.text)

    def _said(self, frame: TranscriptionFrame) -> None:
        if self.realtime:
            self.caller.transcribed(frame)

    def _played_out(self, frame: LLMFullResponseEndFrame) -> None:
        self.speech.playing_ended(frame)
        self._changed()

    def _response_started(self, frame: LLMFullResponseStartFrame) -> None:
        self.caller.turn_ended()
        self.speech.response_started(frame)

    def _interim(self, frame: InterimTranscriptionFrame) -> None:
        if frame.text.strip():
            self.session.user_partial(frame.text)

    def _write_notes(self, frame: LLMContextFrame) -> None:
        """Tell the model, before it runs, which held results it must (not) voice."""
        context: LLMContext = frame.context
        for call in self.session.state.calls.values():
            if call.call_id in self._noted or call.call_id not in self._known:
                continue
            note = delivery_note(call)
            if note is None:
                continue
            self._noted.add(call.call_id)
            if self.realtime:  # the provider has the conversation: the LLM sends it on
                speak = call.delivery != "discarded"
                write = self.processor.append(note, run_llm=speak)
                self.processor.create_task(write, f"callstate-note-{call.call_id}")
            else:
                context.add_message({"role": "system", "content": note})
