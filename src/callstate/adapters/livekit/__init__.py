"""callstate for LiveKit Agents: one call records an ``AgentSession`` and guards its tools.

::

    agent = Agent(instructions="...", tools=guarded_tools(tools))
    lk = AgentSession(llm=..., stt=..., tts=..., vad=...)
    attach(lk, await keeper.start(caller=phone, agent=agent.id), agents=AGENTS)
    await lk.start(agent, room=ctx.room)

A resumed session continues in a new ``AgentSession`` built by ``restore(...)``.

Facts from livekit-agents 1.8.9 this adapter is built on (``voice/agent_activity.py``,
``voice/generation.py``, ``voice/speech_handle.py``, ``voice/agent.py``): tools run in
their own tasks and a barge-in never cancels one (``_execute_tools_task`` waits for
them when its task is cancelled); a barge-in during the pre-tool speech stores the
assistant message truncated with ``interrupted=True`` (nothing if nothing played) and
commits the tool outputs with ``reply_required=False``; a barge-in after that speech,
while the tool runs, commits its output with ``reply_required=True`` but skips the
reply; a tool outliving ``INTERRUPTION_TIMEOUT`` (5 s) is released with a placeholder
and its result arrives later as a deferred reply. In each case nothing voices the
result: here it is held, and on the caller's next turn it is delivered, discarded or
(a write) announced, as ``callstate.reconcile`` decides. A handoff (a tool returning an
``Agent``) keeps ``userdata`` and ``session.history`` but starts the new agent's
``chat_ctx`` empty; ``Agent(chat_ctx=...)`` would drop calls of tools it lacks.
Hooks used are listed in ``_recorder.py``.
"""

from __future__ import annotations

try:
    import livekit.agents  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    msg = "callstate.adapters.livekit needs LiveKit Agents: pip install callstate[livekit]"
    raise ImportError(msg) from exc

from ._context import AgentFactory, chat_context, context_messages, seed_agent
from ._hooks import delivery_note
from ._recorder import LiveKitRecovery, attach
from ._restore import restore
from ._tools import guarded_tools, recovery_for

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
