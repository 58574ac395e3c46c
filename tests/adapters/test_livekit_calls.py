"""Function calls the model gets wrong, through a real LiveKit ``AgentSession``."""

from __future__ import annotations

import json

from .test_livekit_harness import Call, Reply, items_of


async def test_ints_for_str_parameters_fail_in_the_guard_and_never_run() -> None:
    """``{"booking_id": 1042, "time": 20}`` ends failed naming the field; the write never runs."""
    replies = [
        Reply([], [("c1", "move_booking", {"booking_id": 1042, "time": 20})]),
        Reply(["Sorry."]),
    ]
    async with Call(replies) as call:
        await call.lk.run(user_input="move 1042 to eight")
        failed = call.cs.state.calls["c1"]
        assert ("failed", "ToolArgumentsError") == (failed.status, failed.error_type)
        assert "Expected `str`, got `int` - at `$.booking_id`" in (failed.error or "")
        assert [] == call.tools.ran
        [out] = items_of(call.llm.seen[1], "function_call_output")
        assert True is out["is_error"]
        assert "`$.booking_id`" in json.loads(out["output"])["error"]


async def test_the_schema_livekit_sends_is_the_guards() -> None:
    """The tool schema LiveKit gives the model is ``ToolSpec.json_schema()``."""
    async with Call([Reply(["Hi."])]) as call:
        await call.lk.run(user_input="hello")
        tools = {t.info.name: t.info.raw_schema for t in call.lk.current_agent.tools}
        spec = call.tools.registry.get("move_booking")
        assert spec.json_schema() == tools["move_booking"]["parameters"]
        assert "Move a booking to a new time." == tools["move_booking"]["description"]


async def test_a_reused_call_id_with_new_arguments_runs_and_answers_its_own_result() -> None:
    """``c1`` sent again with another date runs again; LiveKit gets the new result under c1."""
    replies = [
        Reply([], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Free."]),
        Reply([], [("c1", "check_availability", {"date": "tue"})]),
        Reply(["Also free."]),
    ]
    async with Call(replies) as call:
        call.tools.release["check_availability"].set()
        await call.lk.run(user_input="is monday free")
        await call.lk.run(user_input="and tuesday?")
        assert ["check_availability", "check_availability"] == call.tools.ran
        outputs = items_of(call.llm.seen[3], "function_call_output")
        assert ["c1", "c1"] == [o["call_id"] for o in outputs]
        dates = [json.loads(o["output"])["result"]["date"] for o in outputs]
        assert ["mon", "tue"] == dates
        assert "c1" == call.cs.state.calls["c1#2"].wire_id


async def test_a_reused_call_id_with_the_same_arguments_is_answered_again() -> None:
    """``c1`` asked again with the same date in a new turn: not run again, LiveKit answered."""
    replies = [
        Reply([], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Free."]),
        Reply([], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Still free."]),
    ]
    async with Call(replies) as call:
        call.tools.release["check_availability"].set()
        await call.lk.run(user_input="is monday free")
        await call.lk.run(user_input="sure about monday?")
        assert ["check_availability"] == call.tools.ran
        outputs = items_of(call.llm.seen[3], "function_call_output")
        assert ["c1", "c1"] == [o["call_id"] for o in outputs]
        assert [{"date": "mon", "free": ["19:00", "20:00"]}] * 2 == [
            json.loads(o["output"])["result"] for o in outputs
        ]
        assert "Still free." == call.cs.context()[-1]["content"]


async def test_unknown_names_and_non_object_arguments_are_journaled_failed() -> None:
    """Calls LiveKit answers itself (no such tool, a list for arguments) are journaled failed."""
    replies = [
        Reply([], [("c1", "teleport", {"to": "mars"}), ("c2", "move_booking", ["B1"])]),  # type: ignore[list-item]
        Reply(["Sorry."]),
    ]
    async with Call(replies) as call:
        await call.lk.run(user_input="beam me up")
        await call.recovery.wait_idle()
        calls = call.cs.state.calls
        assert {"c1": "UnknownTool", "c2": "ToolArgumentsError"} == {
            cid: calls[cid].error_type for cid in ("c1", "c2")
        }
        assert {"failed"} == {calls["c1"].status, calls["c2"].status}
        assert "no tool named 'teleport'" in (calls["c1"].error or "")
        assert "must be a JSON object, got an array" in (calls["c2"].error or "")
        assert [] == call.tools.ran
        assert ["c1", "c2"] == [m["tool_call_id"] for m in call.cs.context() if m["role"] == "tool"]
