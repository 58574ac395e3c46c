"""OpenAI Realtime adapter: the ``openai`` realtime connection, kept alive by callstate.

``connect(client, session, model=...)`` opens ``client.realtime.connect()`` (the real
``AsyncOpenAI`` websocket) and returns a ``RealtimeAdapter`` with the same send/recv
event API (``send``, ``recv``, ``async for``, ``session.update``,
``response.create``, ``conversation.item.create/truncate``, ``input_audio_buffer.*``).
On the way through it:

- records the conversation in the callstate ``Session`` in conversation order: caller
  transcripts (``conversation.item.input_audio_transcription.delta/completed`` →
  ``user_partial``/``user_said``, placed where the caller's item joined the
  conversation even when the transcript arrives after the answer began; user
  ``input_text`` items → ``user_said``), assistant items (``response.output_item.added``
  → ``agent_started``; transcript deltas → ``agent_progress``; the next caller item →
  ``agent_finished``) and function calls;
- runs each ``response.function_call_arguments.done`` through the guard
  (``Session.run_tool``) and answers each function call item exactly once per
  Realtime session with a ``function_call_output`` (``context.call_output`` of the
  recorded outcome), whenever it lands — also for calls re-run or landed by the keeper;
  a reused ``call_id`` gets an output per item (its own call for new arguments, the
  recorded outcome again for the same ones);
- truncates interrupted assistant audio (``conversation.item.truncate`` from user code,
  or automatically on ``input_audio_buffer.speech_started`` when ``playback`` names the
  item playing and its played position) clamped to the audio received, and records the
  barge-in with ``Session.interrupt``; items that arrived after it are cut at 0;
- sends ``response.create`` only when no response is active and no newer caller turn
  superseded it (a held result waits for the caller's turn: the reconciler's rule), and
  for function calls once per response, after the outputs of all its calls are in;
- stamps an ``event_id`` on every client event and maps ``error`` events back to the
  event that caused them (``adapter.source_of(error)``);
- skips a server frame it cannot use (not JSON, not an event object, a field it reads
  missing): logged on ``callstate.adapters.openai_realtime`` and kept in
  ``adapter.bad_frames``; the connection stays up. One bad frame is no reason to drop a
  live call, and nothing in it could be acted on anyway.

A Realtime session cannot be resumed server-side. On a drop (any close code), on a
``session.created`` after the first (the SDK's own ``on_reconnecting`` re-dial), on
``session_expired`` and proactively ``rollover_margin_s`` before ``max_session_s`` (the
60-minute cap; a timer, so a silent line rolls over too, at its next quiet moment) the
adapter opens a new session, re-sends the session config, replays the conversation
from the checkpoint in order with the resume note (``recovery.plan``) and an
instruction to keep answering by voice, answers calls that completed during the gap,
flushes the outbox (speech held while the link was down, here or on the worker the
call was resumed from, is asked of the model in one response, so the caller hears it
and the conversation holds it as it plays), and yields a ``ResumedEvent`` (``type == "callstate.resumed"``;
its ``item_ids`` map callstate item ids to the replayed items' new ids, also kept in
``adapter.item_ids``, and an ``item_id`` user code sends is mapped the same way). The
old socket is closed in the background.

When another keeper takes the call over (the handle is fenced: ``session.fenced``,
``session.wait_fenced()``, one ``session.fenced`` recovery event), the adapter stops
recording, answering and rolling over, closes the Realtime socket, and ``recv()``
returns one ``FencedEvent`` (``type == "callstate.fenced"``), also on a quiet line;
``async for`` ends after it, later ``recv()`` calls raise the fencing
``StaleEpochError`` and sends are dropped.

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

from .._fenced import FencedEvent
from .._replay import VOICE_NOTE, Replay, replay
from ._adapter import RealtimeAdapter
from ._api import ResumedEvent
from ._continuity import RestoreStats
from ._frames import BadFrame

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from ...session import Session

__all__ = [
    "VOICE_NOTE",
    "BadFrame",
    "FencedEvent",
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
        **options: ``playback`` (``() -> (item_id, played_ms) | None``: the assistant
            item the caller is hearing and how far; a bare ``played_ms`` means the newest
            item), ``run_tools``, ``max_session_s``, ``rollover_margin_s``,
            ``reconnect_attempts``, ``reconnect_delay``, ``transcript_wait_s`` (how long
            what follows a caller item waits for its transcript, default 3 s),
            ``connect_options`` (passed to ``client.realtime.connect``).
    """
    return RealtimeAdapter(client, session, model=model, config=config, **options)
