"""PipecatRecovery: the state a Pipecat pipeline feeds into one callstate ``Session``.

The LLM service is tapped with its synchronous frame events, so what it sees is
recorded in pipeline order, before the service acts on it:

- ``on_before_process_frame``: ``InterruptionFrame`` (the barge-in is recorded before
  Pipecat cancels the function calls it overtakes), ``LLMContextUserTurnFrame`` (the
  final user turn, as the user aggregator wrote it to the context) and
  ``LLMContextFrame`` (where notes on held tool results are written before inference);
- ``on_before_push_frame``: ``LLMFullResponseStartFrame`` / ``LLMTextFrame`` /
  ``LLMFullResponseEndFrame`` (each response is one agent utterance, its text as
  generated) and ``FunctionCallsStartedFrame`` (which response asked for which call).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

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
    TTSTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.services.llm_service import FunctionCallParams, LLMService

from ...context import call_output
from ...errors import CallstateError, ConfigError
from ...session import Session
from ...state import ToolCall
from ...tools import ToolOutcome
from ._frames import CallstateObserver, CallstateProcessor

__all__ = ["PipecatRecovery", "result_payload"]

_SEEN_FRAMES = 64  # barge-ins and user turns remembered, to record each once


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


@dataclass(slots=True, eq=False)
class _Utterance:
    """One agent response (or one spoken ``TTSSpeakFrame``) and how much of it played."""

    uid: str
    kind: Literal["llm", "speak"]
    generated: list[str] = field(default_factory=list)
    played: list[tuple[str, bool]] = field(default_factory=list)  # (text, spaces included)
    audio_ms: float = 0.0
    speech_done: bool = False
    calls: list[str] = field(default_factory=list)
    closed: bool = False
    recorded: tuple[str, str] = ("", "")  # (text, heard) last written to the session

    def text(self) -> str:
        if self.kind == "speak":
            return self.heard()
        return "".join(self.generated).strip()

    def heard(self) -> str:
        out = ""
        for text, spaced in self.played:
            if out and not spaced and not out[-1].isspace() and not text[:1].isspace():
                out += " "
            out += text
        return out.strip()


class PipecatRecovery:
    """Adds callstate recovery to a Pipecat pipeline.

    Registers every tool of the keeper's ``ToolRegistry`` on ``llm`` through the guard
    and taps the LLM's frame events. Put :attr:`processor` right after
    ``transport.output()`` and :attr:`observer` in the worker's observers::

        recovery = PipecatRecovery(session, llm)
        pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm, tts,
                             transport.output(), recovery.processor, aggregators.assistant()])
        worker = PipelineWorker(pipeline, observers=[recovery.observer])

    Args:
        session: the live callstate session this pipeline speaks for.
        llm: the pipeline's LLM service.
        functions: tool names to register (default: every tool in the registry).
        async_functions: tools registered with ``cancel_on_interruption=False``: the
            model carries on while they run (Pipecat's asynchronous function calls).

    Raises:
        ConfigError: the keeper has no ``ToolRegistry`` but ``functions`` names tools,
            or a name is not registered.
    """

    def __init__(
        self,
        session: Session,
        llm: LLMService,
        *,
        functions: Iterable[str] | None = None,
        async_functions: Iterable[str] = (),
    ) -> None:
        self.session = session
        self.llm = llm
        self.processor = CallstateProcessor(self)
        self.observer = CallstateObserver(self)
        self._utt: _Utterance | None = None  # the response being generated or played
        self._playing: _Utterance | None = None  # the response the transport is releasing
        self._starts: dict[int, _Utterance] = {}  # LLMFullResponseStartFrame id -> response
        self._utts: dict[str, _Utterance] = {}  # uid -> response with calls still open
        self._call_utt: dict[str, str] = {}  # tool call id -> uid of the response that asked
        self._known: set[str] = set()  # call ids run or watched by this adapter
        self._noted: set[str] = set()  # call ids whose delivery note was written
        self._seen: deque[int] = deque(maxlen=_SEEN_FRAMES)
        self._last_turn_ts = -1
        self._register(functions, set(async_functions))
        llm.add_event_handler("on_before_process_frame", self._llm_in)
        llm.add_event_handler("on_before_push_frame", self._llm_out)

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
                    utterance_id=self._call_utt.get(call_id),
                )
            )
            try:
                outcome = await asyncio.shield(run)
            except asyncio.CancelledError:
                # Pipecat gave up on the call (a barge-in, its timeout): the guard has not
                self.processor.detach(call_id, name, params.arguments, run)
                raise
            self._call_ended(call_id)
            run_llm = self._run_llm(call_id)
            props = FunctionCallResultProperties(run_llm=False) if run_llm is False else None
            await params.result_callback(result_payload(outcome), properties=props)

        handle.__name__ = f"callstate_{name}"
        return handle

    def _run_llm(self, call_id: str) -> bool | None:
        """False while the result's delivery is held or was discarded, else Pipecat's call."""
        call = self.session.state.calls.get(call_id)
        if call is not None and call.delivery in ("held", "discarded"):
            return False
        return None if call is None or not call.overtaken else True

    def _late_result(self, call_id: str, run: asyncio.Future[ToolOutcome]) -> tuple[Any, bool]:
        """Payload and ``run_llm`` for the outcome of a detached call."""
        self._call_ended(call_id)
        if run.cancelled():
            return {"status": "unknown", "error": "the call was cancelled"}, False
        exc = run.exception()
        if exc is not None:
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}, True
        return result_payload(run.result()), self._run_llm(call_id) is not False

    def _call_ended(self, call_id: str) -> None:
        uid = self._call_utt.get(call_id)
        utt = self._utts.get(uid) if uid is not None else None
        if utt is not None:
            self._maybe_finish(utt)

    # -- calls this pipeline did not start -------------------------------------------------

    async def _watch(self) -> None:
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

    # -- the LLM's frames ------------------------------------------------------------------

    def _llm_in(self, _llm: object, frame: Frame) -> None:
        if isinstance(frame, InterruptionFrame):
            self._barge_in(frame)
        elif isinstance(frame, LLMContextUserTurnFrame):
            self._user_turn(frame)
        elif isinstance(frame, LLMContextFrame):
            self._write_notes(frame.context)

    def _llm_out(self, _llm: object, frame: Frame) -> None:
        if isinstance(frame, LLMTextFrame):
            if self._utt is not None and not self._utt.closed and frame.skip_tts is not True:
                self._utt.generated.append(frame.text)
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._response_started(frame)
        elif isinstance(frame, FunctionCallsStartedFrame):
            utt = self._utt
            for fc in frame.function_calls:
                if utt is not None and fc.tool_call_id not in self._call_utt:
                    self._call_utt[fc.tool_call_id] = utt.uid
                    utt.calls.append(fc.tool_call_id)
        elif isinstance(frame, LLMFullResponseEndFrame) and self._utt is not None:
            self._record_text(self._utt)

    def _response_started(self, frame: LLMFullResponseStartFrame) -> None:
        if self._utt is not None:
            self._finish(self._utt)  # a new response: the last one is over
        utt = _Utterance(uid=self.session.agent_started(""), kind="llm")
        self._utt = utt
        self._utts[utt.uid] = utt
        self._starts[frame.id] = utt

    # -- speech as played ------------------------------------------------------------------

    def _playing_started(self, frame: LLMFullResponseStartFrame) -> None:
        self._playing = self._starts.pop(frame.id, None)

    def _played_text(self, frame: TTSTextFrame) -> None:
        utt = self._playing
        if utt is None:
            if self._utt is None or self._utt.closed:
                # speech with no LLM response around it (a TTSSpeakFrame)
                self._utt = _Utterance(uid=self.session.agent_started(""), kind="speak")
            utt = self._utt
        if utt.closed:
            return  # released after the barge-in was recorded
        utt.played.append((frame.text, frame.includes_inter_frame_spaces))
        self._record_text(utt)

    def _played_audio(self, frame: OutputAudioRawFrame) -> None:
        utt = self._playing or self._utt
        if utt is not None and not utt.closed and frame.sample_rate > 0:
            samples = len(frame.audio) / (2 * max(1, frame.num_channels))
            utt.audio_ms += samples * 1000.0 / frame.sample_rate

    def _playing_ended(self) -> None:
        utt, self._playing = self._playing, None
        if utt is not None:
            utt.speech_done = True
            self._maybe_finish(utt)

    def _speech_stopped(self) -> None:
        if self._playing is None and self._utt is not None and self._utt.kind == "speak":
            self._utt.speech_done = True
            self._maybe_finish(self._utt)

    def _record_text(self, utt: _Utterance) -> None:
        now = (utt.text(), utt.heard())
        if now != utt.recorded and not utt.closed:
            utt.recorded = now
            self.session.agent_progress(utt.uid, spoken_text=now[1], text=now[0])

    def _maybe_finish(self, utt: _Utterance) -> None:
        """Finish a response once it has played out and the calls it asked for ended."""
        calls = self.session.state.calls
        if utt.speech_done and all(
            (c := calls.get(cid)) is None or c.terminal for cid in utt.calls
        ):
            self._finish(utt)

    def _finish(self, utt: _Utterance) -> None:
        self._utts.pop(utt.uid, None)
        if self._utt is utt:
            self._utt = None
        if utt.closed:
            return
        utt.closed = True
        self.session.agent_finished(utt.uid, text=utt.text() or None)

    # -- the caller ------------------------------------------------------------------------

    def _once(self, frame: Frame) -> bool:
        """True the first time a frame (or its broadcast sibling) is seen."""
        key = min(frame.id, frame.broadcast_sibling_id or frame.id)
        if key in self._seen:
            return False
        self._seen.append(key)
        return True

    def _barge_in(self, frame: InterruptionFrame, *, at_output: bool = False) -> None:
        """Record a barge-in: truncate the response to what played, overtake open calls.

        Recorded where it is seen first: at the LLM, before Pipecat cancels the calls it
        overtakes (``at_output`` is the fallback for one the LLM never saw).
        """
        if at_output:
            # everything the transport released before this frame has been seen
            self._playing = None
            self._starts = {k: u for k, u in self._starts.items() if not u.closed}
        if not self._once(frame):
            return
        utt = self._utt if self._utt is not None and not self._utt.closed else None
        if utt is None:
            if self.session.state.in_flight:
                self.session.interrupt()
            return
        self._record_text(utt)
        utt.closed = True
        self._utt = None
        self._utts.pop(utt.uid, None)
        self.session.interrupt(
            heard_text=utt.heard(), audio_end_ms=round(utt.audio_ms), utterance_id=utt.uid
        )

    def _user_turn(self, frame: LLMContextUserTurnFrame) -> None:
        if self._once(frame) and frame.text.strip():
            self._last_turn_ts = self.llm.get_clock().get_time()
            self.session.user_said(frame.text)

    def _observed(self, frame: Frame, pushed_at: int) -> None:
        """What the observer saw; errors stay here (they would end the observer's task)."""
        try:
            if isinstance(frame, LLMContextUserTurnFrame):
                self._user_turn(frame)  # a backstop: the LLM normally records it first
            elif (
                isinstance(frame, InterimTranscriptionFrame)
                # an interim pushed before the last final turn was recorded is part of it
                and pushed_at > self._last_turn_ts
                and frame.text.strip()
            ):
                self.session.user_partial(frame.text)
        except CallstateError:
            return  # a handle that may no longer record: nothing to keep

    def _write_notes(self, context: LLMContext) -> None:
        """Tell the model, before it runs, which held results it must (not) voice."""
        for call in self.session.state.calls.values():
            if call.call_id in self._noted or call.call_id not in self._known:
                continue
            note = _note(call)
            if note is not None:
                self._noted.add(call.call_id)
                context.add_message({"role": "system", "content": note})
