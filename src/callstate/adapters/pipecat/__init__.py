"""callstate for Pipecat: add recovery to an existing pipeline with a couple of lines.

::

    recovery = PipecatRecovery(session, llm)   # the keeper's tools, through the guard
    pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm,
                         recovery.processor, tts, transport.output(), aggregators.assistant()])

A resumed (or accepted) session starts from ``seed_context(context, session)``.

Hooks used, all public: the synchronous ``on_before_process_frame`` /
``on_before_push_frame`` events of the LLM service, of the user aggregator and of the
output transport; ``register_function`` (each tool, and a catch-all ``None`` handler
unless the LLM has one, so a name nobody registered is journaled as a failed call);
one ``FrameProcessor`` right after the LLM.
No observer: a Pipecat observer is handed every frame at every processor (through a
queue and a task of its own), which cost more than all the rest put together.
``_recovery.py``, ``_speech.py`` and ``_frames.py`` say which frames each one records.
The exception: a realtime service's reconnects, for which Pipecat has no public hook;
``_redial.py`` (``OpenAIRealtimeLLMService``: drop, ``session_expired``, rollover) and
``_redial_gemini.py`` (``GeminiLiveLLMService``: re-seed without a handle, ``goAway``)
keep every use of those services' private side, each with the reason.

What this relies on, as read in pipecat-ai 1.14.0:

- Processors only ever see ``InterruptionFrame`` (``InterruptionWorkerFrame`` asks the
  worker to push one). The LLM service cancels the calls registered with
  ``cancel_on_interruption=True`` (the default) when it processes it, then broadcasts
  a ``FunctionCallCancelFrame`` (a system frame); a result reported later is refused.
- The assistant aggregator writes ``"IN_PROGRESS"`` for a sync call when its
  ``FunctionCallInProgressFrame`` (an uninterruptible control frame, queued behind the
  reply's audio) arrives and ``"CANCELLED"`` on the cancel frame, but only if the
  in-progress frame got there first: a barge-in while it still waits behind the audio
  leaves the call ``"IN_PROGRESS"`` for good. An async call
  (``cancel_on_interruption=False``) gets an async-tool "started" message instead.
- With ``run_in_parallel=False`` an interruption cancels only the running call: the
  sequential runner then starts the next queued one.
- The output transport pushes a ``TTSTextFrame`` once the audio queued before it has
  been written (by its clock, at its timestamp, for word-timestamp TTS), and each audio
  chunk after writing it. The user aggregator consumes ``InterimTranscriptionFrame``
  and broadcasts ``LLMContextUserTurnFrame`` with each user turn it writes.
- ``LLMContext`` messages are OpenAI-format dicts. ``interruptible`` is not a
  constructor argument of ``LLMMessagesAppendFrame``: it is set on the frame.
- A realtime LLM (``OpenAIRealtimeLLMService``, ``GeminiLiveLLMService``: its
  ``LLMServiceMetadataFrame`` says ``is_realtime_service``) keeps the conversation on
  the provider's server and sends only what it processes itself: OpenAI's answers a
  ``FunctionCallCancelFrame`` with a ``"CANCELLED"`` output, Gemini's ignores
  ``toolCallCancellation`` and would send a refused tool response. There the outcome of
  a call overtaken by a barge-in goes into the LLM as an ``LLMMessagesAppendFrame``
  note, and so do the delivery notes once the caller's turn ends.
- ``PipelineWorker`` / ``WorkerRunner`` replace the deprecated ``PipelineTask`` /
  ``PipelineRunner``.
"""

from __future__ import annotations

try:
    import pipecat.frames.frames  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    msg = "callstate.adapters.pipecat needs Pipecat: pip install callstate[pipecat]"
    raise ImportError(msg) from exc

from ._context import context_messages, seed_context
from ._frames import CallstateProcessor
from ._recovery import PipecatRecovery, result_payload

__all__ = [
    "CallstateProcessor",
    "PipecatRecovery",
    "context_messages",
    "result_payload",
    "seed_context",
]
