"""Tool arguments checked against the signature in the guard, and call ids the model reuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import callstate
from callstate.testing import FakeClock


class Opaque:
    """A type JSON cannot carry."""


class Slot(msgspec.Struct):
    """A time slot."""

    day: str
    hour: int


@pytest.fixture
async def keeper(tmp_path: Path) -> AsyncIterator[callstate.Keeper]:
    """A keeper on a real SQLite file whose registry holds a write and a read."""
    tools = callstate.ToolRegistry()
    k = callstate.Keeper(
        f"sqlite:///{tmp_path}/cs.db", tools=tools, clock=FakeClock(), secret=b"s" * 32
    )
    k.ran = []  # type: ignore[attr-defined]

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(
        booking_id: str, time: str, *, ctx: callstate.ToolContext
    ) -> dict[str, Any]:
        """Move a booking to another time.

        Args:
            booking_id: the booking's reference, e.g. B1042.
            time: the new time, as HH:MM.
        """
        k.ran.append(("move_booking", booking_id, time))  # type: ignore[attr-defined]
        return {"booking_id": booking_id, "time": time}

    @tools.tool
    async def find(
        party: Annotated[int, msgspec.Meta(ge=1)],
        slots: list[Slot],
        vip: bool = False,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Find a table."""
        k.ran.append(("find", party, slots, vip))  # type: ignore[attr-defined]
        return {"party": party, "hours": [s.hour for s in slots], "vip": vip, "note": note}

    async with k:
        yield k


def ran(k: callstate.Keeper) -> list[Any]:
    return k.ran  # type: ignore[attr-defined,no-any-return]


async def test_wrong_types_fail_journaled_naming_the_field(keeper: callstate.Keeper) -> None:
    """Ints for str parameters end failed with msgspec's path; the write never runs."""
    s = await keeper.start()
    out = await s.run_tool("move_booking", {"booking_id": "B1", "time": 20}, call_id="c1")
    assert ("failed", "ToolArgumentsError") == (out.status, out.error_type)
    assert "Expected `str`, got `int` - at `$.time` (value: 20)" in (out.error or "")
    assert [] == ran(keeper)
    await s.flush()
    stored = (await keeper.load(s.id)).calls["c1"]
    assert ("failed", {"booking_id": "B1", "time": 20}) == (stored.status, stored.args)
    assert "`$.time`" in (stored.error or "")


async def test_missing_and_unknown_fields_fail_naming_them(keeper: callstate.Keeper) -> None:
    """A missing required argument or an unknown one is a failed call naming the field."""
    s = await keeper.start()
    missing = await s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1")
    extra = await s.run_tool(
        "move_booking", {"booking_id": "B1", "time": "20:00", "when": "now"}, call_id="c2"
    )
    assert "missing required field `time`" in (missing.error or "")
    assert "unknown field `when`" in (extra.error or "")
    assert [] == ran(keeper)


async def test_constraints_and_nested_types_are_checked(keeper: callstate.Keeper) -> None:
    """``Meta(ge=1)`` and a nested Struct's fields are enforced, with the nested path."""
    s = await keeper.start()
    zero = await s.run_tool("find", {"party": 0, "slots": []}, call_id="c1")
    nested = await s.run_tool(
        "find", {"party": 2, "slots": [{"day": "mon", "hour": "late"}]}, call_id="c2"
    )
    assert "Expected `int` >= 1 - at `$.party`" in (zero.error or "")
    assert "at `$.slots[0].hour`" in (nested.error or "")
    assert [] == ran(keeper)


async def test_lax_coercion_hands_the_tool_converted_values(keeper: callstate.Keeper) -> None:
    """Quoted numbers and booleans, whole floats: the tool gets ints, bools and Structs."""
    s = await keeper.start()
    args = {"party": "4", "slots": [{"day": "mon", "hour": 20.0}], "vip": "true"}
    out = await s.run_tool("find", args, call_id="c1")
    assert ("succeeded", {"party": 4, "hours": [20], "vip": True, "note": None}) == (
        out.status,
        out.result,
    )
    assert [("find", 4, [Slot("mon", 20)], True)] == ran(keeper)
    assert args == s.state.calls["c1"].args  # the journal keeps what the model sent


def test_json_schema_comes_from_the_same_type() -> None:
    """The schema has the parameters (not ctx), required ones, docs, constraints and $defs."""
    tools = callstate.ToolRegistry()

    @tools.tool
    async def find(
        party: Annotated[int, msgspec.Meta(ge=1)], slots: list[Slot], vip: bool = False
    ) -> None:
        """Find a table.

        Args:
            party: how many people.
            slots: acceptable slots,
                best first.
        """

    spec = tools.get("find")
    schema = spec.json_schema()
    assert {
        "type": "object",
        "properties": {
            "party": {"type": "integer", "minimum": 1, "description": "how many people."},
            "slots": {
                "type": "array",
                "items": {"$ref": "#/$defs/Slot"},
                "description": "acceptable slots, best first.",
            },
            "vip": {"type": "boolean", "default": False},
        },
        "required": ["party", "slots"],
        "additionalProperties": False,
        "$defs": {
            "Slot": {
                "title": "Slot",
                "description": "A time slot.",
                "type": "object",
                "properties": {"day": {"type": "string"}, "hour": {"type": "integer"}},
                "required": ["day", "hour"],
            }
        },
    } == schema
    assert ("find", "Find a table.") == (spec.function_schema()["name"], spec.description)
    json.dumps(schema)


async def test_kwargs_let_unknown_fields_through(keeper: callstate.Keeper) -> None:
    """A tool taking ``**kwargs`` gets unknown fields as sent; its schema allows them."""
    tools = keeper.tools
    assert tools is not None

    @tools.tool
    async def log(level: int, **fields: Any) -> dict[str, Any]:
        return {"level": level, **fields}

    s = await keeper.start()
    out = await s.run_tool("log", {"level": "2", "who": "x"}, call_id="c1")
    assert {"level": 2, "who": "x"} == out.result
    assert "additionalProperties" not in tools.get("log").json_schema()


def test_annotations_that_cannot_be_checked_are_refused_at_registration() -> None:
    """A type JSON cannot carry, one that does not resolve, or a positional-only one: ConfigError."""
    tools = callstate.ToolRegistry()

    class Local(msgspec.Struct):
        x: int

    async def odd(thing: Opaque) -> None: ...

    async def hidden(a: int, thing: Local) -> None: ...

    async def positional(x: int, /) -> None: ...

    with pytest.raises(callstate.ConfigError, match="parameter `thing`"):
        tools.add(odd)
    with pytest.raises(
        callstate.ConfigError, match=r"parameter `thing` \('Local'\) cannot be resolved"
    ):
        tools.add(hidden)
    with pytest.raises(callstate.ConfigError, match="`x` is positional-only"):
        tools.add(positional)


# -- call ids the model reuses ------------------------------------------------------------


async def test_a_reused_call_id_with_new_arguments_is_a_new_call(
    keeper: callstate.Keeper,
) -> None:
    """``call_0`` sent again with other arguments runs as ``call_0#2``, never a stale result."""
    s = await keeper.start()
    first = await s.run_tool(
        "move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="call_0"
    )
    second = await s.run_tool(
        "move_booking", {"booking_id": "B2", "time": "21:00"}, call_id="call_0"
    )
    again = await s.run_tool(
        "move_booking", {"booking_id": "B2", "time": "21:00"}, call_id="call_0"
    )
    assert ["call_0", "call_0#2", "call_0#2"] == [o.call_id for o in (first, second, again)]
    assert {"booking_id": "B2", "time": "21:00"} == second.result
    assert [False, False, True] == [o.deduplicated for o in (first, second, again)]
    assert [("move_booking", "B1", "20:00"), ("move_booking", "B2", "21:00")] == ran(keeper)
    call = s.state.calls["call_0#2"]
    assert ("call_0", "succeeded") == (call.wire_id, call.status)
    ids = [m["tool_call_id"] for m in s.context() if m["role"] == "tool"]
    assert ["call_0", "call_0#2"] == ids
    third = await s.run_tool("move_booking", {"booking_id": "B3", "time": "9:00"}, call_id="call_0")
    assert "call_0#3" == third.call_id
    await s.flush()
    assert "call_0" == (await keeper.load(s.id)).calls["call_0#3"].wire_id


async def test_a_reused_call_id_survives_a_handoff(keeper: callstate.Keeper) -> None:
    """The handoff package carries which framework id a renamed call came under."""
    s = await keeper.start(agent="triage")
    await s.run_tool("move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="c1")
    await s.run_tool("move_booking", {"booking_id": "B2", "time": "20:00"}, call_id="c1")
    pkg = await s.handoff(to="billing")
    s2 = await keeper.accept(pkg.to_bytes())
    assert "c1" == s2.state.calls["c1#2"].wire_id
    assert (
        "c1#2"
        == (
            await s2.run_tool("move_booking", {"booking_id": "B2", "time": "20:00"}, call_id="c1")
        ).call_id
    )
    assert 2 == len(ran(keeper))


# -- what the model sends that is not an arguments object ---------------------------------


async def test_raw_json_text_is_parsed_and_non_objects_fail_journaled(
    keeper: callstate.Keeper,
) -> None:
    """The model's raw JSON runs the tool; ``null``, a list or broken JSON end failed."""
    s = await keeper.start()
    ok = await s.run_tool("move_booking", '{"booking_id": "B1", "time": "20:00"}', call_id="c1")
    empty = await s.run_tool("find", "", call_id="c2")
    bad = {
        "c3": await s.run_tool("move_booking", "null", call_id="c3"),
        "c4": await s.run_tool("move_booking", b"[1, 2]", call_id="c4"),
        "c5": await s.run_tool("move_booking", '{"booking_id": ', call_id="c5"),
        "c6": await s.run_tool("move_booking", ["B1"], call_id="c6"),  # type: ignore[arg-type]
    }
    assert ("succeeded", "failed") == (ok.status, empty.status)
    assert "missing required field `party`" in (empty.error or "")
    assert {"failed"} == {o.status for o in bad.values()}
    assert {"ToolArgumentsError"} == {o.error_type for o in bad.values()}
    assert "must be a JSON object, got null: 'null'" in (bad["c3"].error or "")
    assert "must be a JSON object, got an array" in (bad["c4"].error or "")
    assert "arguments are not valid JSON" in (bad["c5"].error or "")
    assert "got an array: ['B1']" in (bad["c6"].error or "")
    assert [("move_booking", "B1", "20:00")] == ran(keeper)
    await s.flush()
    stored = (await keeper.load(s.id)).calls
    assert {"failed"} == {stored[c].status for c in bad}
    again = await s.run_tool("move_booking", "null", call_id="c3")
    assert ("c3", True) == (again.call_id, again.deduplicated)


async def test_a_tool_not_offered_fails_as_unknown_without_running(
    keeper: callstate.Keeper,
) -> None:
    """``offered`` limits the names a call may run: a registered tool outside it fails."""
    s = await keeper.start()
    out = await s.run_tool(
        "move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="c1", offered={"find"}
    )
    assert ("failed", "UnknownTool") == (out.status, out.error_type)
    assert "(known: ['find'])" in (out.error or "")
    assert [] == ran(keeper)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.sampled_from(["party", "slots", "vip", "note", "x"]), json_values))
def test_binding_any_json_object_fits_or_raises_only_tool_arguments_error(
    value: dict[str, Any],
) -> None:
    """Whatever object the model sends, ``bind`` converts it or raises ToolArgumentsError."""
    tools = callstate.ToolRegistry()

    @tools.tool
    async def find(
        party: Annotated[int, msgspec.Meta(ge=1)],
        slots: list[Slot],
        vip: bool = False,
        note: str | None = None,
    ) -> None: ...

    error = ""
    kwargs: dict[str, Any] = {}
    try:
        kwargs = tools.get("find").bind(value)
    except callstate.ToolArgumentsError as exc:
        error = str(exc)
    if error:
        assert error.startswith("tool 'find': ")
    else:
        assert {"party", "slots"} <= set(kwargs) <= {"party", "slots", "vip", "note"}
