"""``attach``: one call that records an ``AgentSession``, and finding what is attached."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from livekit.agents import AgentSession

from ...errors import ConfigError
from ...session import Session
from ._context import AgentFactory
from ._realtime import RealtimeContext
from ._recorder import LiveKitRecovery

__all__ = ["attach", "recovery_for"]

#: AgentSession -> the recovery attached to it (tools look it up per call)
_ATTACHED: weakref.WeakKeyDictionary[Any, LiveKitRecovery] = weakref.WeakKeyDictionary()


def recovery_for(session: AgentSession[Any]) -> LiveKitRecovery:
    """The ``LiveKitRecovery`` attached to ``session``.

    Raises:
        ConfigError: nothing is attached to it (see ``attach``).
    """
    found = _ATTACHED.get(session)
    if found is None:
        msg = "no callstate session is attached to this AgentSession; call attach(...) first"
        raise ConfigError(msg)
    return found


def attach(
    agent_session: AgentSession[Any],
    session: Session,
    *,
    agents: Mapping[str, AgentFactory] | None = None,
    end_on_close: bool = True,
) -> LiveKitRecovery:
    """Record ``agent_session`` into the callstate ``session``: one call, before or after start.

    Args:
        agent_session: the LiveKit session.
        session: the callstate session (started, resumed or accepted).
        agents: factories of the LiveKit agents by callstate agent name (their
            ``Agent.id``), used to rebuild the current agent on a resume.
        end_on_close: end the callstate call when the LiveKit session closes.

    Returns:
        The :class:`LiveKitRecovery` recording it; tools from ``guarded_tools`` find it.
    """
    recovery = LiveKitRecovery(agent_session, session, agents=agents, end_on_close=end_on_close)
    # with a RealtimeModel the provider keeps the conversation: callstate's notes go there
    RealtimeContext(agent_session, recovery.write_notes)
    _ATTACHED[agent_session] = recovery
    return recovery
