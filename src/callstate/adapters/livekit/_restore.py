"""A new ``AgentSession`` for a resumed (or accepted) callstate session."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from livekit.agents import Agent, AgentSession, llm

from ...errors import ConfigError
from ...session import Session
from ._attach import attach
from ._context import AgentFactory, chat_context
from ._realtime import seed_for
from ._recorder import LiveKitRecovery

__all__ = ["restore"]


def _enters(session: Session) -> bool:
    """Whether the restored agent meets the caller now (its ``on_enter`` should run)."""
    plan = session.recovery
    if plan is not None:
        return plan.via == "handoff"  # a resume continues where the agent already was
    return not session.state.items


def _skip_on_enter(agent: Agent) -> None:
    """The agent entered this call in an earlier worker: its next entry is a no-op."""
    entered = agent.on_enter  # bound: a subclass's override

    async def on_enter() -> None:
        agent.on_enter = entered  # type: ignore[method-assign]  # later entries run it

    agent.on_enter = on_enter  # type: ignore[method-assign]


async def restore(
    session: Session,
    agents: Mapping[str, AgentFactory],
    *,
    userdata: Callable[[dict[str, Any]], Any] | None = None,
    end_on_close: bool = True,
    on_enter: bool | None = None,
    **session_options: Any,
) -> tuple[AgentSession[Any], Agent, LiveKitRecovery]:
    """Rebuild a LiveKit session where ``session`` left off; then ``await lk.start(agent)``.

    The current agent is built from ``agents[session.state.agent]`` and seeded with the
    conversation (function calls and outputs included) and the resume note of
    ``session.recovery`` (or the handoff note of an accepted package); the new
    ``AgentSession`` gets the conversation in its ``history`` and the session's
    userdata back, and is attached.

    Args:
        session: a resumed or accepted callstate session.
        agents: factories of the LiveKit agents by callstate agent name.
        userdata: builds the LiveKit userdata from the stored dict (default: the dict).
        end_on_close: see :func:`attach`.
        on_enter: run the agent's ``on_enter`` when it starts. By default it runs for
            an accepted handoff (the agent meets the caller now) and not for a resumed
            call (the agent already entered it: a greeting would be spoken again).
        session_options: passed to ``AgentSession(...)`` (``llm=``, ``tts=``, ...).

    Returns:
        ``(agent_session, agent, recovery)``.

    Raises:
        ConfigError: no factory is registered for the session's agent, or several
            agents are on a keeper without a ``secret`` (see :func:`attach`).
    """
    name = session.state.agent
    factory = agents.get(name)
    if factory is None:
        msg = f"no LiveKit agent factory for agent {name!r} (known: {sorted(agents)})"
        raise ConfigError(msg)
    agent = factory()
    if not (on_enter if on_enter is not None else _enters(session)):
        _skip_on_enter(agent)
    seeded = chat_context(session)
    model = session_options.get("llm")  # a realtime model may take no system notes
    await agent.update_chat_ctx(seed_for(seeded, model), exclude_invalid_function_calls=False)
    data = dict(session.state.userdata)
    lk: AgentSession[Any] = AgentSession(
        userdata=userdata(data) if userdata is not None else data, **session_options
    )
    # the app's record of the call (session.history) starts from the whole conversation;
    # the notes for the model stay in the agent's context
    lk.history.insert([i for i in seeded.items if not _is_note(i)])
    recovery = attach(lk, session, agents=agents, end_on_close=end_on_close)
    recovery.seeded(seeded.items, userdata=data, agent=agent)
    return lk, agent, recovery


def _is_note(item: llm.ChatItem) -> bool:
    return isinstance(item, llm.ChatMessage) and item.role in ("system", "developer")
