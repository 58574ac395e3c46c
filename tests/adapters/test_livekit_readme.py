"""The README's LiveKit Agents section: its example does what the text says it does."""

from __future__ import annotations

from typing import Any

import pytest
from livekit.agents import AgentSession

import callstate

from .readme_blocks import Seen, load, section_code

TITLE = "LiveKit Agents"


async def test_restore_carries_history_and_the_resume_token_needs_the_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The resumed call's new ``AgentSession`` holds the first worker's conversation in
    ``session.history``, and the resumed session has a fresh resume token (it has a secret)."""
    seen = Seen()
    restored: list[tuple[callstate.Session, AgentSession[Any]]] = []
    ns = load(section_code(TITLE), seen)
    real_restore = ns["restore"]

    async def restore(session: callstate.Session, *args: Any, **kwargs: Any) -> Any:
        out = await real_restore(session, *args, **kwargs)
        restored.append((session, out[0]))
        return out

    ns["restore"] = restore
    await ns["main"]()
    capsys.readouterr()
    ((resumed, lk2),) = restored
    history = [
        (item.role, item.text_content)
        for item in lk2.history.items
        if getattr(item, "type", "") == "message" and item.role in ("user", "assistant")
    ]
    assert ("user", "Please move booking B1 to eight.") == history[0]
    assert ("user", "Thanks!") in history
    assert resumed.token is not None
    assert resumed.state.epoch == 2


async def test_without_the_secret_the_caller_id_is_refused() -> None:
    """The secret the example passes is what lets it record the caller's number: without
    it ``keeper.start(caller=...)`` raises ConfigError naming ``secret``."""
    code = section_code(TITLE)
    ns = load(code.replace("secret=SECRET, ", ""), Seen())
    assert "secret=SECRET, " in code
    with pytest.raises(callstate.ConfigError, match="secret"):
        await ns["main"]()


async def test_more_than_one_agent_without_a_secret_is_refused_and_resume_has_no_token() -> None:
    """As the text says: ``attach`` with two agents on a keeper without a secret raises
    ConfigError (a handoff could not be signed); one agent attaches, and
    ``keeper.resume(session_id)`` works but gives no resume token."""
    ns = load(section_code(TITLE), Seen())
    booker = ns["booker"]
    async with callstate.Keeper("memory://", tools=ns["tools"]) as keeper:
        session = await keeper.start(agent="booker")
        lk: AgentSession[Any] = AgentSession(llm=ns["Script"]())
        with pytest.raises(callstate.ConfigError, match="secret"):
            ns["attach"](lk, session, agents={"booker": booker, "billing": booker})
        ns["attach"](lk, session, agents={"booker": booker})
        await session.flush()
        resumed = await keeper.resume(session.id)
        await lk.aclose()
    assert (2, None) == (resumed.state.epoch, resumed.token)
