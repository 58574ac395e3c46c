"""Handoffs between LiveKit agents (a tool returning an ``Agent``) carry the whole call."""

from __future__ import annotations

from typing import Any

from livekit.agents import Agent, RunContext, function_tool, llm

from callstate.adapters.livekit import guarded_tools

from .test_livekit_harness import Booker, Call, Reply, Tools, items_of, system_texts


class Billing(Agent):
    """The target agent: it can move bookings but cannot check availability."""

    def __init__(self, tools: Tools, chat_ctx: llm.ChatContext | None = None) -> None:
        super().__init__(
            instructions="You handle billing.",
            tools=guarded_tools(tools.registry, ["move_booking"]),
            chat_ctx=chat_ctx,
        )


def transfer(tools: Tools) -> Any:
    async def transfer_to_billing(context: RunContext) -> Agent:
        """Hand the caller to the billing agent."""
        return Billing(tools)

    return function_tool(transfer_to_billing)


async def test_handoff_carries_context_calls_and_ledger() -> None:
    """The new agent starts from the full context (calls of tools it lacks too) and ledger."""
    replies = [
        Reply(["Let me check."], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Eight is free."]),
        Reply([], [("h1", "transfer_to_billing", {})]),
        Reply(["You owe nothing."]),
        Reply([], [("c2", "move_booking", {"booking_id": "B1", "time": "20:00"})]),
        Reply(["Moved."]),
    ]
    async with Call(replies, agent=lambda tools: Booker(tools, extra=[transfer(tools)])) as call:
        call.tools.release["check_availability"].set()
        call.tools.release["move_booking"].set()
        first = call.cs
        await call.lk.run(user_input="is monday free")
        call.lk.userdata["plan"] = "gold"
        await call.lk.run(user_input="and my bill?")
        await call.recovery.wait_idle()
        assert "billing" == call.lk.current_agent.id
        second = call.recovery.session
        assert second is not first
        assert ("billing", 2, "offered") == (
            second.state.agent,
            second.state.epoch,
            first.state.status,
        )
        assert {"party": 2, "plan": "gold"} == second.state.userdata
        assert "succeeded" == second.state.calls["c1"].status  # the ledger came along
        # LiveKit alone would start the new agent cold, or drop the call it lacks a tool for
        dropped = Billing(call.tools, chat_ctx=call.lk.history.copy()).chat_ctx
        assert [] == [i for i in dropped.items if i.type == "function_call"]

        await call.lk.run(user_input="what do I owe?")
        seen = call.llm.seen[-1]
        # the handoff call itself is in the journal, so in the context too
        assert ["c1", "h1"] == [i["call_id"] for i in items_of(seen, "function_call")]
        assert ["c1", "h1"] == [i["call_id"] for i in items_of(seen, "function_call_output")]
        assert "is monday free" in [
            "".join(i["content"]) for i in items_of(seen, "message") if i["role"] == "user"
        ]
        assert any("handed over to you" in t for t in system_texts(seen))
        assert "You handle billing." in system_texts(seen)[0]

        await call.lk.run(user_input="move it to eight")
        assert "succeeded" == second.state.calls["c2"].status  # run on the new owner
        assert [("user", "what do I owe?"), ("assistant", "You owe nothing.")] == [
            (i.kind, i.text) for i in second.state.items[-5:-3]
        ]
