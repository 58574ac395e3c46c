"""What a framework's context is seeded from: one conversion shared by every adapter.

A resumed or accepted session, a recovery plan, a handoff package written by any
framework's adapter, or plain OpenAI-format messages all become the same list of
OpenAI-format messages, built by the core (``Session.context``,
``RecoveryPlan.context`` and the recovery planner over a package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..continuity.plan import RecoveryPlan, plan
from ..errors import ConfigError
from ..handoff.package import HandoffPackage
from ..session import Session

__all__ = ["Source", "context_messages"]

Source = Session | RecoveryPlan | HandoffPackage | Sequence[Mapping[str, Any]]


def context_messages(source: Source, *, system: str | None = None) -> list[dict[str, Any]]:
    """OpenAI-format messages to start a framework's context from.

    Args:
        source: a resumed or accepted ``Session`` (its ``recovery`` plan, else its
            context), a ``RecoveryPlan``, a ``HandoffPackage`` from any framework, or
            plain OpenAI-format messages.
        system: the agent's system prompt, placed first.

    Returns:
        The conversation as the caller heard it, with the resume (or handoff) note
        last, so the model continues the call instead of greeting the caller again.
        For a ``Session``, every outcome these messages carry is recorded as given to
        the model (``session.given_to_model``): seed the framework's context with them.

    Raises:
        ConfigError: ``source`` is none of those, or a message has no string ``role``.
    """
    if isinstance(source, Session):
        if isinstance(source.recovery, RecoveryPlan):
            carried = [o.call_id for o in source.recovery.owed_to_model]
            messages = source.recovery.context(system=system)
        else:
            carried = list(source.state.owed_to_model)
            messages = source.context(system=system)
        for call_id in carried:
            source.given_to_model(call_id, via="seed")
        return messages
    if isinstance(source, RecoveryPlan):
        return source.context(system=system)
    if isinstance(source, HandoffPackage):
        # the same planner a resume uses, over the package alone: no store needed
        return plan(source.to_state(), gap_s=0.0, via="handoff").context(system=system)
    if isinstance(source, Sequence) and not isinstance(source, str | bytes):
        head = [{"role": "system", "content": system}] if system else []
        out = head + [dict(m) for m in source]
        for i, m in enumerate(out):
            if not isinstance(m.get("role"), str):
                msg = f"messages[{i}] has no string `role`: {m!r:.120}"
                raise ConfigError(msg)
        return out
    msg = (
        f"cannot seed a context from {type(source).__name__}; "
        "pass a Session, RecoveryPlan, HandoffPackage or messages"
    )
    raise ConfigError(msg)
