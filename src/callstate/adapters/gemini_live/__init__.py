"""Gemini Live adapter: a ``google-genai`` Live session, kept alive by callstate.

``connect(client, session, model=..., config=...)`` opens
``client.aio.live.connect()`` (the real ``google.genai`` websocket session) and returns
a ``GeminiLiveAdapter`` with the same receive/send API (``recv``, ``async for``,
``send_client_content``, ``send_realtime_input``). On the way through it:

- records the conversation in the callstate ``Session``: input transcription →
  ``user_partial`` / ``user_said`` (the turn ends when the model answers), model audio
  and output transcription → ``agent_started`` / ``agent_progress``, ``turnComplete``
  → ``agent_finished`` (turn on ``input_audio_transcription`` and
  ``output_audio_transcription`` in the config for transcripts);
- on ``interrupted`` records the barge-in with ``Session.interrupt`` at the played
  position (``playback() -> played_ms`` of the model turn playing; without it, all the
  audio received counts as heard);
- runs each ``toolCall`` through the guard (``Session.run_tool`` with the arguments as
  JSON text; an unknown tool is journaled failed) and gives every outcome to the model
  once (``Session.on_outcome(owed=True)``, then ``given_to_model``): as the
  ``toolResponse`` while the call is open on this connection, else (cancelled by
  ``toolCallCancellation`` after a barge-in, asked on an earlier connection, re-run by a
  resume) as a ``clientContent`` note without ``turnComplete``: the model knows at once
  and voices it in its next turn, so a held result waits for the caller's turn;
- keeps the latest ``sessionResumptionUpdate.newHandle`` in the journal (userdata key
  ``HANDLE_KEY``) and, on a drop or at the first quiet moment after ``goAway``, dials a
  new connection with it: the server continues the conversation, nothing is replayed
  and nothing is said. An outcome sent to the model is ``given_to_model`` only once a
  later resumable handle covers it (the server offers none while a call is open), so
  one lost with the line, or not yet in the state a handle resumes, is given again. With no handle, or one the server refuses, the conversation is
  replayed from the journal as ``clientContent`` turns (``turnComplete`` false: no
  greeting), with the resume note, trimmed to the ``context_window_compression``
  window (sliding window target, else trigger tokens); the configured compression goes
  into every setup. The session is on hold until the new connection is up
  (``connection_lost`` / ``connection_restored``); then the outbox goes out in order
  (``{"client_content": {...}}`` / ``{"realtime_input": {...}}`` entries as those
  calls; speech held while the link was down is asked of the model in one turn), and
  a ``GeminiResumed`` is yielded;
- skips a server frame the SDK cannot build a message from (not JSON, wrong types):
  logged and kept in ``adapter.bad_frames``; the connection stays up;
- once another keeper takes the call over (the handle is fenced: ``session.fenced``,
  ``session.wait_fenced()``, one ``session.fenced`` recovery event), stops recording
  and giving outcomes, closes the Live connection, and ``recv()`` returns one
  ``FencedEvent`` (``type == "callstate.fenced"``), also on a quiet line; ``async for``
  ends after it, later ``recv()`` calls raise the fencing ``StaleEpochError`` and sends
  are dropped.
"""

from __future__ import annotations

try:
    from google import genai
    from google.genai import types
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    msg = "callstate.adapters.gemini_live needs google-genai: pip install callstate[gemini]"
    raise ImportError(msg) from exc

from typing import TYPE_CHECKING, Any

from .._fenced import FencedEvent
from ._adapter import HANDLE_KEY, BadFrame, GeminiLiveAdapter, GeminiResumed, Playback
from ._replay import replay_turns

if TYPE_CHECKING:
    from ...session import Session

__all__ = [
    "HANDLE_KEY",
    "BadFrame",
    "FencedEvent",
    "GeminiLiveAdapter",
    "GeminiResumed",
    "Playback",
    "connect",
    "replay_turns",
]


def connect(
    client: genai.Client,
    session: Session,
    *,
    model: str,
    config: types.LiveConnectConfig | dict[str, Any] | None = None,
    **options: Any,
) -> GeminiLiveAdapter:
    """A ``GeminiLiveAdapter`` to use as ``async with connect(...) as live``.

    Args:
        client: a ``google.genai.Client`` (``http_options`` may point anywhere).
        session: the callstate session this call records into.
        model: the Live model.
        config: the ``LiveConnectConfig`` (or its dict) sent in every setup; the adapter
            sets only ``session_resumption.handle``.
        **options: ``playback``, ``run_tools``, ``reconnect_attempts``,
            ``reconnect_delay``.
    """
    return GeminiLiveAdapter(client, session, model=model, config=config, **options)
