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


def context_messages(
    source: Source, *, system: str | None = None, session: Session | None = None
) -> list[dict[str, Any]]:
    """OpenAI-format messages to start a framework's context from.

    Args:
        source: a resumed or accepted ``Session`` (its ``recovery`` plan, else its
            context), a ``RecoveryPlan``, a ``HandoffPackage`` from any framework, or
            plain OpenAI-format messages.
        system: the agent's system prompt, placed first.
        session: with a ``HandoffPackage``, the session accepted from it: the outcomes
            the package's conversation carries (given to the source's model, or still
            owed to it) are recorded as given to this session's model, so an adapter
            attached to it does not deliver them again. Outcomes that landed after the
            offer stay owed and are delivered on attach.

    Returns:
        The conversation as the caller heard it, with the resume (or handoff) note
        last, so the model continues the call instead of greeting the caller again.
        For a ``Session``, every outcome these messages carry is recorded as given to
        the model (``session.given_to_model``): seed the framework's context with them.

    Raises:
        ConfigError: ``source`` is none of those, a message has no string ``role``, or
            ``session`` is not the package's session.
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
        messages = plan(source.to_state(), gap_s=0.0, via="handoff").context(system=system)
        if session is not None:
            _given_from(source, session)
        return messages
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


def _given_from(package: HandoffPackage, session: Session) -> None:
    """Record as given to ``session``'s model what a context seeded from ``package`` holds."""
    if session.id != package.session_id:
        msg = (
            f"session {session.id!r} is not the session of handoff package "
            f"{package.package_id!r} ({package.session_id!r})"
        )
        raise ConfigError(msg)
    kept = {i.id for i in package.payload.items if i.kind == "call"}
    for call_id in (*package.owed_to_model, *package.given_to_model):
        if call_id in kept and call_id in session.state.calls:
            session.given_to_model(call_id, via="seed")
