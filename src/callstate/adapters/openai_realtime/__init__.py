"""OpenAI Realtime adapter: the ``openai`` realtime connection, kept alive by callstate.

``connect(client, session, model=...)`` opens ``client.realtime.connect()`` (the real
``AsyncOpenAI`` websocket) and returns a ``RealtimeAdapter`` with the same send/recv
event API (``send``, ``recv``, ``async for``, ``session.update``,
``response.create``, ``conversation.item.create/truncate``, ``input_audio_buffer.*``).
On the way through it:

- records the conversation in the callstate ``Session``: caller transcripts
  (``conversation.item.input_audio_transcription.delta/completed`` →
  ``user_partial``/``user_said``; user ``input_text`` items → ``user_said``), assistant
  items (``response.output_item.added`` → ``agent_started``; transcript deltas →
  ``agent_progress``; the next turn → ``agent_finished``) and function calls;
- runs each ``response.function_call_arguments.done`` through the guard
  (``Session.run_tool``) and answers every ``call_id`` exactly once per Realtime
  session with a ``function_call_output`` (``context.call_output`` of the recorded
  outcome), whenever it lands — also for calls re-run or landed by the keeper;
- truncates interrupted assistant audio (``conversation.item.truncate`` from user code,
  or automatically on ``input_audio_buffer.speech_started`` when ``playback`` tells
  the played position) at the played position clamped to the audio received, and
  records the barge-in with ``Session.interrupt``;
- sends ``response.create`` only when no response is active and no newer caller turn
  superseded it (a held result waits for the caller's turn: the reconciler's rule);
- stamps an ``event_id`` on every client event and maps ``error`` events back to the
  event that caused them (``adapter.source_of(error)``).

A Realtime session cannot be resumed server-side. On a drop (any close code), on a
``session.created`` after the first (the SDK's own ``on_reconnecting`` re-dial), on
``session_expired`` and proactively before ``max_session_s`` (the 60-minute cap) the
adapter opens a new session, re-sends the session config, replays the conversation
from the checkpoint in order with the resume note (``recovery.plan``) and an
instruction to keep answering by voice, answers calls that completed during the gap,
flushes the outbox, and yields a ``ResumedEvent`` (``type == "callstate.resumed"``).

Hooks used: ``AsyncOpenAI.realtime.connect(model=..., **options).enter()``, the
connection's async iterator (which honours ``on_reconnecting``), ``send_raw(json)`` and
``close()``; ``openai.types.realtime`` server event models; callstate's
``Session.user_partial/user_said/agent_started/agent_progress/agent_finished``,
``run_tool``, ``interrupt``, ``connection_lost/connection_restored``, ``outbox``,
``handoff`` + ``Keeper.accept``, ``recovery.plan``, ``context.call_output``.
"""

from __future__ import annotations

try:
    import openai.resources.realtime.realtime  # noqa: F401
    import websockets  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    msg = (
        "callstate.adapters.openai_realtime needs the openai realtime client: "
        "pip install callstate[openai]"
    )
    raise ImportError(msg) from exc

from typing import TYPE_CHECKING, Any

from ._adapter import RealtimeAdapter
from ._api import ResumedEvent
from ._continuity import RestoreStats
from ._replay import VOICE_NOTE, Replay, replay

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from ...session import Session

__all__ = [
    "VOICE_NOTE",
    "RealtimeAdapter",
    "Replay",
    "RestoreStats",
    "ResumedEvent",
    "connect",
    "replay",
]


def connect(
    client: AsyncOpenAI,
    session: Session,
    *,
    model: str,
    config: dict[str, Any] | None = None,
    **options: Any,
) -> RealtimeAdapter:
    """A ``RealtimeAdapter`` to use as ``async with connect(...) as conn``.

    Args:
        client: an ``openai.AsyncOpenAI`` (``websocket_base_url`` may point anywhere).
        session: the callstate session this call records into.
        model: the Realtime model.
        config: the agent's session config (sent as ``session.update`` and re-sent to
            every new Realtime session).
        **options: ``playback`` (``() -> int | None``, the played ms of the current
            assistant item), ``run_tools``, ``max_session_s``, ``rollover_margin_s``,
            ``reconnect_attempts``, ``reconnect_delay``, ``connect_options`` (passed to
            ``client.realtime.connect``).
    """
    return RealtimeAdapter(client, session, model=model, config=config, **options)
