"""callstate for Pipecat: add recovery to an existing pipeline with a couple of lines.

::

    recovery = PipecatRecovery(session, llm)   # tools through the guard, LLM tapped
    pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm, tts,
                         transport.output(), recovery.processor, aggregators.assistant()])

A resumed (or accepted) session starts from ``seed_context(context, session)``.

Hooks used (Pipecat 1.14), all public: the synchronous ``on_before_process_frame`` /
``on_before_push_frame`` events of the LLM service and of the user aggregator,
``register_function``, and a ``FrameProcessor`` after the output transport (which
releases ``TTSTextFrame`` as its audio plays). No observer: a Pipecat observer is
handed every frame at every processor, which would cost more than all the rest.
See ``_recovery.py`` and ``_frames.py`` for which frames each hook records.
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
