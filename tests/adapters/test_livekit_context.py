"""Converting callstate's conversation into LiveKit's types: contexts and tool schemas."""

from __future__ import annotations

from typing import Any

import pytest
from livekit.agents import llm

from callstate import ToolContext, ToolRegistry
from callstate.adapters.livekit import chat_context, guarded_tools
from callstate.errors import ConfigError

MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "move my booking"},
    {"role": "assistant", "content": "One moment."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "move", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"status":"succeeded"}'},
    {"role": "system", "content": "note"},
]


def test_chat_context_keeps_calls_and_outputs_in_order() -> None:
    """Messages become LiveKit items in order; a call and its output keep id and name."""
    ctx = chat_context(MESSAGES, system="You book tables.")
    kinds = [(i.type, getattr(i, "role", None)) for i in ctx.items]
    assert [
        ("message", "system"),
        ("message", "user"),
        ("message", "assistant"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "system"),
    ] == kinds
    call, out = ctx.items[3], ctx.items[4]
    assert isinstance(call, llm.FunctionCall)
    assert isinstance(out, llm.FunctionCallOutput)
    assert ("c1", "move", "c1", "move") == (call.call_id, call.name, out.call_id, out.name)
    assert '{"status":"succeeded"}' == out.output


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ([{"role": "robot", "content": "hi"}], "messages[0]"),
        ([{"role": "tool", "content": "x"}], "tool_call_id"),
        ([{"role": "assistant", "tool_calls": [{"function": {}}]}], "tool_calls[0]"),
    ],
)
def test_malformed_messages_get_a_config_error_naming_the_field(
    bad: list[dict[str, Any]], named: str
) -> None:
    """A malformed message is refused with a ConfigError that names where it is."""
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        chat_context(bad)


def test_chat_context_refuses_an_unknown_source() -> None:
    """Something that is not a session, plan, package or messages is a ConfigError."""
    with pytest.raises(ConfigError, match="int"):
        chat_context(42)  # type: ignore[arg-type]


def test_guarded_tool_schema_leaves_out_the_tool_context() -> None:
    """A tool's LiveKit schema has its own parameters (not ``ctx``) and its summary line."""
    reg = ToolRegistry()

    @reg.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str, time: str = "20:00", *, ctx: ToolContext) -> dict:
        """Move a booking.

        Longer text that stays out of the description.
        """
        return {}

    [tool] = guarded_tools(reg)
    schema = tool.info.raw_schema
    assert ("move_booking", "Move a booking.") == (schema["name"], schema["description"])
    assert ["booking_id", "time"] == list(schema["parameters"]["properties"])
    assert ["booking_id"] == schema["parameters"]["required"]


def test_guarded_tools_refuses_an_unknown_name() -> None:
    """Asking for a tool the registry lacks is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="'nope'"):
        guarded_tools(ToolRegistry(), ["nope"])
