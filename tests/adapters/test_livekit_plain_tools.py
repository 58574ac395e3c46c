"""Plain LiveKit ``@function_tool`` calls, the handoff tool among them, are in the journal;
a handoff needs a keeper with a ``secret``, and says so before anything moves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, RunContext, function_tool

from callstate import Keeper
from callstate.adapters.livekit import attach
from callstate.errors import ConfigError
from callstate.testing import FakeClock

from .test_livekit_handoff import Billing, transfer
from .test_livekit_harness import Booker, Call, Reply, Tools, items_of, system_texts

CHECK = Reply(["Let me check."], [("c1", "check_availability", {"date": "mon"})])


def special() -> Any:
    async def todays_special(context: RunContext, course: str) -> str:
        """Say what today's special is for a course."""
        return f"{course}: mushroom risotto"

    return function_tool(todays_special)


def with_plain(tools: Tools) -> Agent:
    return Booker(tools, extra=[special(), transfer(tools)])


def tool_messages(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """call id -> (name, output) of every tool call in OpenAI-format messages."""
    names = {
        tc["id"]: tc["function"]["name"]
        for m in messages
        if m["role"] == "assistant"
        for tc in m.get("tool_calls") or []
    }
    return {
        m["tool_call_id"]: {"name": names[m["tool_call_id"]], **json.loads(m["content"])}
        for m in messages
        if m["role"] == "tool"
    }


async def test_a_plain_function_tool_call_is_journaled_and_resumed() -> None:
    """A plain tool's call and output are recorded; a resumed context shows them."""
    replies = [Reply([], [("p1", "todays_special", {"course": "main"})]), Reply(["Risotto."])]
    async with Call(replies, agent=with_plain) as call:
        await call.lk.run(user_input="what's the special?")
        p1 = call.cs.state.calls["p1"]
        assert ("todays_special", {"course": "main"}, "succeeded", "main: mushroom risotto") == (
            p1.name,
            p1.args,
            p1.status,
            p1.result,
        )
        assert [("user", ""), ("call", ""), ("assistant", "Risotto.")] == [
            (i.kind, i.text if i.kind == "assistant" else "") for i in call.cs.state.items
        ]
        await call.lk.aclose()
        await call.recovery.wait_idle()
        resumed = await call.keeper.resume(call.cs.id)
        assert resumed.recovery is not None
        seen = tool_messages(resumed.recovery.context())
        assert {"name": "todays_special", "status": "succeeded"} == {
            k: seen["p1"][k] for k in ("name", "status")
        }
        assert "main: mushroom risotto" == seen["p1"]["result"]


async def test_the_handoff_tool_call_is_journaled_and_seen_by_the_new_agent() -> None:
    """The tool that returned the new agent is in the ledger the new agent starts from."""
    replies = [CHECK, Reply(["Eight is free."]), Reply([], [("h1", "transfer_to_billing", {})])]
    async with Call([*replies, Reply(["You owe nothing."])], agent=with_plain) as call:
        call.tools.release["check_availability"].set()
        await call.lk.run(user_input="is monday free")
        await call.lk.run(user_input="and my bill?")
        await call.recovery.wait_idle()
        second = call.recovery.session
        assert "billing" == second.state.agent
        h1 = second.state.calls["h1"]
        assert ("transfer_to_billing", "succeeded") == (h1.name, h1.status)
        await call.lk.run(user_input="what do I owe?")
        seen = call.llm.seen[-1]
        assert ["c1", "h1"] == [i["call_id"] for i in items_of(seen, "function_call")]
        assert ["c1", "h1"] == [i["call_id"] for i in items_of(seen, "function_call_output")]


async def test_agents_to_hand_off_between_need_a_secret() -> None:
    """attach with several agents on a keeper without a secret is a ConfigError naming it."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start(agent="booker")
        lk: AgentSession[Any] = AgentSession()
        agents = {"booker": lambda: Booker(tools), "billing": lambda: Billing(tools)}
        with pytest.raises(ConfigError, match="secret="):
            attach(lk, s, agents=agents)
        attach(lk, s, agents={"booker": agents["booker"]})  # one agent: nothing to sign


async def test_a_handoff_without_a_secret_stays_put_and_says_why() -> None:
    """No secret: LiveKit and callstate both stay on the old agent; the error names it."""
    replies = [Reply([], [("h1", "transfer_to_billing", {})]), Reply(["I can't transfer you."])]
    async with Call(replies, agent=with_plain, secret=None) as call:
        await call.lk.run(user_input="my bill please")
        await call.recovery.wait_idle()
        assert ("booker", "booker") == (call.lk.current_agent.id, call.cs.state.agent)
        assert call.recovery.session is call.cs
        [error] = call.recovery.errors
        assert isinstance(error, ConfigError)
        assert "secret=" in str(error)
        h1 = call.cs.state.calls["h1"]
        assert "failed" == h1.status
        assert "secret=" in str(h1.error)
        # the model is told, and answers the caller
        [out] = items_of(call.llm.seen[-1], "function_call_output")
        assert True is out["is_error"]
        assert "secret=" in out["output"]
        assert "I can't transfer you." == call.cs.state.items[-1].text
        assert not any("handed over" in t for t in system_texts(call.llm.seen[-1]))
