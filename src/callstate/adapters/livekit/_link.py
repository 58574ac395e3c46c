"""The room link is up: the callstate session leaves hold and its held speech is said."""

from __future__ import annotations

import logging
from typing import Any

from livekit.agents import AgentSession

from ...session import Session
from .._held import open_link

__all__ = ["link_up"]

log = logging.getLogger("callstate.adapters.livekit")


def link_up(agent_session: AgentSession[Any], session: Session) -> None:
    """Take ``session`` off hold; speech it held (here, or on the worker the call was
    resumed from) was never heard, so the agent is asked to say it in one reply,
    recorded as heard only as it plays."""
    kept, say = open_link(session)
    for entry in kept:
        log.warning("callstate: an outbox entry the agent session cannot send: %r", entry)
    if say is not None:
        agent_session.generate_reply(instructions=say)
