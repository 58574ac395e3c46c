"""LiveKit ``ChatContext`` from what callstate kept: a session, a plan, a package, messages.

The conversation is built by the core (``Session.context``, ``RecoveryPlan.context``, the
recovery planner over a ``HandoffPackage``), so a package written by any framework's
adapter seeds a LiveKit agent the same way. Function calls and their outputs are kept,
also for tools the receiving agent does not have (``Agent(chat_ctx=...)`` would drop
them: it copies the context with ``tools=`` its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from livekit.agents import Agent, llm

from ...continuity.plan import plan
from ...errors import ConfigError
from ...session import Session
from .._seed import Source, context_messages

__all__ = ["AgentFactory", "chat_context", "context_messages", "handoff_messages", "seed_agent"]

#: Builds the LiveKit agent registered under a callstate agent name.
AgentFactory = Callable[[], Agent]


def handoff_messages(session: Session) -> list[dict[str, Any]]:
    """What a package offered now would seed the target with, without any I/O."""
    return plan(session.state, gap_s=0.0, via="handoff").context()  # pure: state untouched


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def chat_context(
    source: Source, *, system: str | None = None, session: Session | None = None
) -> llm.ChatContext:
    """A LiveKit ``ChatContext`` holding :func:`context_messages` of ``source``.

    Assistant ``tool_calls`` become ``FunctionCall`` items and ``tool`` messages
    ``FunctionCallOutput`` items, in order, whatever tools the agent has. ``session``:
    the session accepted from a ``HandoffPackage`` source (see :func:`context_messages`).

    Raises:
        ConfigError: ``source`` cannot be read, or a message is malformed (the message
            names its index and field).
    """
    ctx = llm.ChatContext.empty()
    names: dict[str, str] = {}
    base = time.time()
    for i, m in enumerate(context_messages(source, system=system, session=session)):
        at = base + i * 1e-6  # strictly increasing: LiveKit orders items by creation time
        role = m.get("role")
        if role in ("system", "developer", "user"):
            ctx.add_message(role=role, content=_text(m.get("content")), created_at=at)
        elif role == "assistant":
            text = _text(m.get("content"))
            if text:
                ctx.add_message(role="assistant", content=text, created_at=at)
            for j, tc in enumerate(m.get("tool_calls") or []):
                fn = tc.get("function") if isinstance(tc, Mapping) else None
                if not isinstance(fn, Mapping) or not isinstance(tc.get("id"), str):
                    msg = f"messages[{i}].tool_calls[{j}] is not a function call: {tc!r:.120}"
                    raise ConfigError(msg)
                names[tc["id"]] = str(fn.get("name", ""))
                ctx.insert(
                    llm.FunctionCall(
                        call_id=tc["id"],
                        name=names[tc["id"]],
                        arguments=str(fn.get("arguments") or "{}"),
                        created_at=at + (j + 1) * 1e-7,
                    )
                )
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                msg = f"messages[{i}] (tool) has no string `tool_call_id`: {call_id!r}"
                raise ConfigError(msg)
            ctx.insert(
                llm.FunctionCallOutput(
                    call_id=call_id,
                    name=names.get(call_id, ""),
                    output=_text(m.get("content")),
                    is_error=False,
                    created_at=at,
                )
            )
        else:
            msg = f"messages[{i}] has no known `role`: {role!r}"
            raise ConfigError(msg)
    return ctx


async def seed_agent(agent: Agent, source: Source, *, session: Session | None = None) -> Agent:
    """Give ``agent`` the conversation of ``source`` before it starts (calls included).

    ``session``: the session accepted from a ``HandoffPackage`` source, whose outcomes
    in the seeded context are then recorded as given (see :func:`context_messages`).

    Returns:
        ``agent``, for chaining into ``AgentSession.start``.
    """
    await agent.update_chat_ctx(
        chat_context(source, session=session), exclude_invalid_function_calls=False
    )
    return agent
