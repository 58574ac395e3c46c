"""callstate for LiveKit Agents: one call records an ``AgentSession`` and guards its tools.

::

    agent = Agent(instructions="...", tools=guarded_tools(tools))
    lk = AgentSession(llm=..., stt=..., tts=..., vad=...)
    attach(lk, await keeper.start(caller=phone, agent=agent.id), agents=AGENTS)
    await lk.start(agent, room=ctx.room)

A resumed session continues in a new ``AgentSession`` built by ``restore(...)``.

Facts from livekit-agents 1.8.9 this adapter is built on (``voice/agent_activity.py``,
``voice/generation.py``, ``voice/speech_handle.py``, ``voice/agent.py``,
``voice/agent_session.py``), each pinned by a test:

- tools run in their own tasks and a barge-in never cancels one
  (``_execute_tools_task`` waits for them when its own task is cancelled);
- a barge-in during the pre-tool speech stores the assistant message truncated with
  ``interrupted=True`` and commits the tool outputs with ``reply_required=False``
  (``_interrupted_tool_output``); text-only, the chunk being handed to the output when
  the barge-in came counts as said, and nothing is stored if no text was generated;
- a barge-in after that speech, while the tool runs, commits its output with
  ``reply_required=True`` but skips the reply (``not speech_handle.interrupted``);
- a tool outliving ``INTERRUPTION_TIMEOUT`` (5 s) while the turn waits for it is
  released with a "still in progress" output, and its result arrives as a
  ``<call_id>_final`` call and output voiced by a deferred reply; if the timeout fires
  while the speech is still being forwarded, the turn commits nothing at all;
- a handoff (a tool returning an ``Agent``) keeps ``userdata`` and ``session.history``
  but the new agent's ``chat_ctx`` starts empty, and ``Agent(chat_ctx=...)`` drops
  calls of tools it lacks (``ChatContext.copy(tools=...)``); ``function_tools_executed``
  is emitted before the switch, and ``cancel_agent_handoff()`` there stops it (how a
  handoff the keeper cannot sign is refused);
- a plain tool's call is announced by ``ToolCallStarted`` before its function runs;
- the next reply is generated while the current speech plays (an ``on_enter``
  greeting and the caller's first turn), and ``on_enter`` runs on every start;
- nothing is persisted; an ``AgentSession`` runs offline with
  ``session.run(user_input=...)`` and any ``llm.LLM`` subclass.

In each barge-in case nothing voices the result: callstate holds it (stopping a deferred
reply that would talk over the caller) and on the caller's next turn it is delivered,
dropped or (a write) announced, as ``callstate.reconcile`` decides. The hooks used are
listed in ``_recorder.py`` and ``_hooks.py``.
"""

from __future__ import annotations

try:
    import livekit.agents  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    msg = "callstate.adapters.livekit needs LiveKit Agents: pip install callstate[livekit]"
    raise ImportError(msg) from exc

from ._context import AgentFactory, chat_context, context_messages, seed_agent
from ._hooks import delivery_note
from ._recorder import LiveKitRecovery, attach, recovery_for
from ._restore import restore
from ._tools import guarded_tools

__all__ = [
    "AgentFactory",
    "LiveKitRecovery",
    "attach",
    "chat_context",
    "context_messages",
    "delivery_note",
    "guarded_tools",
    "recovery_for",
    "restore",
    "seed_agent",
]
