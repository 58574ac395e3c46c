"""callstate for Pipecat: add recovery to an existing pipeline with a couple of lines.

::

    recovery = PipecatRecovery(session, llm)   # tools through the guard, LLM tapped
    pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm, tts,
                         transport.output(), recovery.processor, aggregators.assistant()])
    worker = PipelineWorker(pipeline, observers=[recovery.observer])

A resumed (or accepted) session starts from ``seed_context(context, session)``.

Hooks used (Pipecat 1.14), all public: the LLM service's synchronous
``on_before_process_frame`` / ``on_before_push_frame`` events, ``register_function``,
a ``FrameProcessor`` after the output transport (which releases ``TTSTextFrame`` as
its audio plays) and a ``BaseObserver`` for interim transcripts. See
``_recovery.py`` and ``_frames.py`` for which frames each one records.
"""

from __future__ import annotations

try:
    import pipecat.frames.frames  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    msg = "callstate.adapters.pipecat needs Pipecat: pip install callstate[pipecat]"
    raise ImportError(msg) from exc

from ._context import context_messages, seed_context
from ._frames import CallstateObserver, CallstateProcessor
from ._recovery import PipecatRecovery, result_payload

__all__ = [
    "CallstateObserver",
    "CallstateProcessor",
    "PipecatRecovery",
    "context_messages",
    "result_payload",
    "seed_context",
]
