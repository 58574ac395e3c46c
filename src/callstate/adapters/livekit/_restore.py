"""A new ``AgentSession`` for a resumed (or accepted) callstate session."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from livekit.agents import Agent, AgentSession

from ...errors import ConfigError
from ...session import Session
from ._context import AgentFactory, chat_context
from ._recorder import LiveKitRecovery, attach

__all__ = ["restore"]


async def restore(
    session: Session,
    agents: Mapping[str, AgentFactory],
    *,
    userdata: Callable[[dict[str, Any]], Any] | None = None,
    end_on_close: bool = True,
    **session_options: Any,
) -> tuple[AgentSession[Any], Agent, LiveKitRecovery]:
    """Rebuild a LiveKit session where ``session`` left off; then ``await lk.start(agent)``.

    The current agent is built from ``agents[session.state.agent]`` and seeded with the
    conversation (function calls and outputs included) and the resume note of
    ``session.recovery`` (or the handoff note of an accepted package); the new
    ``AgentSession`` gets the session's userdata back and is attached.

    Args:
        session: a resumed or accepted callstate session.
        agents: factories of the LiveKit agents by callstate agent name.
        userdata: builds the LiveKit userdata from the stored dict (default: the dict).
        end_on_close: see :func:`attach`.
        session_options: passed to ``AgentSession(...)`` (``llm=``, ``tts=``, ...).

    Returns:
        ``(agent_session, agent, recovery)``.

    Raises:
        ConfigError: no factory is registered for the session's agent.
    """
    name = session.state.agent
    factory = agents.get(name)
    if factory is None:
        msg = f"no LiveKit agent factory for agent {name!r} (known: {sorted(agents)})"
        raise ConfigError(msg)
    agent = factory()
    seeded = chat_context(session)
    await agent.update_chat_ctx(seeded, exclude_invalid_function_calls=False)
    data = dict(session.state.userdata)
    lk: AgentSession[Any] = AgentSession(
        userdata=userdata(data) if userdata is not None else data, **session_options
    )
    recovery = attach(lk, session, agents=agents, end_on_close=end_on_close)
    recovery.seeded(seeded.items, userdata=data)
    return lk, agent, recovery
