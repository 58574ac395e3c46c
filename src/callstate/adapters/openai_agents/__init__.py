"""OpenAI Agents SDK adapter: a ``RealtimeSession`` recorded into callstate and kept alive.

``record(agent, session, model_config=...)`` returns a ``RecordedCall``; use it as
``async with record(...) as call`` and read ``async for event in call`` (the SDK's own
``RealtimeSessionEvent`` objects). ``call.realtime`` is the current ``RealtimeSession``
(``send_audio``, ``send_message``...), ``call.session`` the current callstate session.
On the way through it:

- records the caller's turns (``conversation.item.input_audio_transcription.completed``
  → ``user_said``) and the agent's utterances (assistant items → ``agent_started``,
  their transcript → ``agent_progress``, the caller's next turn → ``agent_finished``);
- runs the agent's tools through the guard (``guard_agent``: ``Session.run_tool``);
- on a barge-in (``input_audio_buffer.speech_started``) records ``Session.interrupt``
  with what the caller heard at the played position: the ``playback_tracker`` of
  ``model_config`` (``RealtimePlaybackTracker``) or, without one, wall-clock time since
  the item's first audio, as the SDK estimates it. The SDK's own
  ``conversation.item.truncate`` is used when it sends one; when it sends none (the
  tracker had not started playing the item) the adapter sends it, so the server drops
  the unheard transcript;
- records a handoff between realtime agents as a callstate handoff (``Session.handoff``
  + ``Keeper.accept``: epoch+1, ``call.session`` is the accepted handle) and gives the
  target agent the handoff note and ``CONTINUE_NOTE`` (no greeting, no goodbye) in its
  instructions; once assistant audio played, a ``session.update`` does not resend the
  voice (the API refuses the whole update with ``cannot_update_voice``);
- when the connection drops or the server says ``session_expired`` (the 60-minute cap),
  puts the session on hold, opens a new ``RealtimeSession`` with the current agent and
  replays the conversation into it (``openai_realtime.replay``: the heard conversation,
  then the resume note), asking for an answer when the agent owes one.

``guard_agent(agent, session)`` alone returns a copy of the ``RealtimeAgent`` whose
function tools (and those of every agent it hands off to) call ``Session.run_tool``
with the model's raw JSON arguments and the model's call id, so each call is journaled
before it runs, deduplicated, and answered with ``context.call_output`` of its recorded
outcome (failed, with the reason, for arguments the tool cannot take).

``record_workflow(agent, session)`` does the same for the SDK's voice pipeline
(``agents.voice.VoicePipeline``, STT → ``Agent`` → TTS): it returns a ``RecordedWorkflow``
(a ``VoiceWorkflowBase``) that records each caller turn and reply, guards the agent's
tools, records handoffs between plain ``Agent`` objects as callstate handoffs, gives the
model callstate's context each turn (a resumed session continues), and cuts a reply
where the app stopped playing it (``workflow.interrupt(played_ms=...)``, with the
result read through ``workflow.stream(result)``).

Audio lengths assume the session's output format (pcm16 at 24 kHz unless the server's
``session.updated`` names G.711).

Hooks used: ``agents.RealtimeAgent.clone(tools=..., handoffs=..., instructions=...)``,
``agents.FunctionTool`` (``on_invoke_tool(ToolContext, str)``; ``ToolContext.tool_call_id``),
``agents.Handoff.on_invoke_handoff`` and ``realtime_handoff``, ``RealtimeRunner(agent,
model=...)``, a subclass of ``OpenAIRealtimeWebSocketModel`` (its ``connect``, ``close``,
``_handle_ws_event`` and ``_send_raw_message``), ``RealtimeModelSendRawMessage`` through
``model.send_event``; callstate's ``Session.user_said/agent_started/agent_progress/
agent_finished``, ``interrupt``, ``run_tool``, ``handoff`` + ``Keeper.accept``,
``connection_lost/connection_restored``, ``recovery.plan``, ``context.call_output``.
"""

from __future__ import annotations

try:
    import agents.realtime
    import agents.voice  # noqa: F401  (numpy: the SDK's `voice` extra)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    msg = (
        "callstate.adapters.openai_agents needs the OpenAI Agents SDK: "
        "pip install callstate[agents]"
    )
    raise ImportError(msg) from exc

from typing import TYPE_CHECKING, Any

from ._call import CONTINUE_NOTE, RecordedCall, continuing
from ._tools import guard_agent, guard_tool
from ._voice import RecordedWorkflow, record_workflow

if TYPE_CHECKING:
    from agents.realtime import RealtimeAgent

    from ...session import Session

__all__ = [
    "CONTINUE_NOTE",
    "RecordedCall",
    "RecordedWorkflow",
    "continuing",
    "guard_agent",
    "guard_tool",
    "record",
    "record_workflow",
]


def record(agent: RealtimeAgent[Any], session: Session, **options: Any) -> RecordedCall:
    """A ``RecordedCall`` to use as ``async with record(agent, session, ...) as call``.

    Args:
        agent: the starting ``RealtimeAgent`` (its tools and handoffs are guarded).
        session: the callstate session the call records into.
        **options: ``model_config`` (the SDK's ``RealtimeModelConfig``: ``url``,
            ``api_key``, ``playback_tracker``, ``initial_model_settings``...),
            ``run_config``, ``context`` and ``reconnect_attempts``.
    """
    return RecordedCall(agent, session, **options)
