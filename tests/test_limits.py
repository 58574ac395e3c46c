"""Depth and size limits hold at recording time: a too-deep, self-referencing or too-large
payload is refused with a typed error naming the field (a tool result: a `failed`
outcome), and after every refusal the session still resumes in a new keeper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate import ConfigError, Limits, PayloadTooDeep, PayloadTooLarge, ToolContext
from callstate.journal.limits import DEFAULT_MAX_DEPTH, check_value

SECRET = b"s" * 32


def _deep(n: int) -> Any:
    value: Any = "leaf"
    for _ in range(n - 1):
        value = [value]
    return [value] if n else value


def _self_list() -> list[Any]:
    a: list[Any] = []
    a.append(a)
    return a


def _self_dict() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["me"] = {"again": d}
    return d


RESULTS: dict[str, Any] = {}
tools = callstate.ToolRegistry()


@tools.tool()
async def give(kind: str) -> Any:
    return RESULTS[kind]


@tools.tool(effect="write")
async def write_back(kind: str) -> Any:
    return RESULTS[kind]


@tools.tool()
async def checkpointer(kind: str, *, ctx: ToolContext) -> str:
    try:
        await ctx.checkpoint({"step": RESULTS[kind]})
    except PayloadTooDeep as exc:
        return f"refused: {exc.field}"
    return "kept"


class Env:
    """A keeper on a SQLite file, and a way to prove the session still resumes."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}/limits.db"

    def keeper(self, **options: Any) -> callstate.Keeper:
        return callstate.Keeper(self.url, secret=SECRET, tools=tools, sweep_every=None, **options)

    async def resumes(self, session: callstate.Session) -> callstate.SessionState:
        """Flush, then resume the session in a fresh keeper and return its state."""
        await session.flush()
        async with self.keeper() as other:
            again = await other.resume(session.id)
            state = again.state
            await again.close()
        return state


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """A SQLite-backed environment, and the tool results it serves reset afterwards."""
    yield Env(tmp_path)
    RESULTS.clear()


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("self-list", _self_list()),
        ("self-dict", _self_dict()),
        ("deep-975", _deep(975)),
        ("deep-5000", _deep(5000)),
        ("just-over", _deep(DEFAULT_MAX_DEPTH + 1)),
    ],
)
@pytest.mark.parametrize("tool", ["give", "write_back"])
async def test_a_too_deep_result_is_a_failed_outcome(
    env: Env, tool: str, kind: str, value: Any
) -> None:
    """A self-referencing or too-deep result ends the call `failed` (never `started`),
    naming the result; the session resumes with the failure recorded."""
    RESULTS[kind] = value
    async with env.keeper() as k:
        s = await k.start()
        out = await s.run_tool(tool, {"kind": kind}, call_id="c1")
        assert ("failed", "PayloadTooDeep") == (out.status, out.error_type)
        assert "result" in (out.error or "")
        assert "failed" == s.state.calls["c1"].status
        state = await env.resumes(s)
    assert "failed" == state.calls["c1"].status


async def test_a_result_at_the_limit_succeeds(env: Env) -> None:
    """A result exactly max_depth deep is recorded and survives a resume."""
    RESULTS["ok"] = _deep(DEFAULT_MAX_DEPTH)
    async with env.keeper() as k:
        s = await k.start()
        out = await s.run_tool("give", {"kind": "ok"}, call_id="c1")
        assert "succeeded" == out.status
        state = await env.resumes(s)
    assert _deep(DEFAULT_MAX_DEPTH) == state.calls["c1"].result


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"kind": _deep(975)}, PayloadTooDeep),
        ({"kind": _self_list()}, PayloadTooDeep),
        ({"kind": _self_dict()}, PayloadTooDeep),
        ({"kind": "x" * 100_000}, PayloadTooLarge),
    ],
    ids=["deep", "self-list", "self-dict", "huge"],
)
async def test_too_deep_or_large_arguments_are_refused(
    env: Env, args: dict[str, Any], error: type[Exception]
) -> None:
    """Arguments over a limit raise a typed error naming them; nothing is recorded."""
    async with env.keeper() as k:
        s = await k.start()
        seq = s.state.seq
        with pytest.raises(error, match="args of call 'c1'") as info:
            await s.run_tool("give", args, call_id="c1")
        assert "c1" in str(info.value.field)  # type: ignore[attr-defined]
        assert seq == s.state.seq
        assert "c1" not in s.state.calls
        state = await env.resumes(s)
    assert "c1" not in state.calls


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (_deep(975), PayloadTooDeep),
        (_deep(DEFAULT_MAX_DEPTH + 1), PayloadTooDeep),
        (_self_list(), PayloadTooDeep),
        (_self_dict(), PayloadTooDeep),
        ("x" * (2 * 1024 * 1024), PayloadTooLarge),
        (list(range(300_000)), PayloadTooLarge),
        ([[[0] * 1000] * 1000] * 1000, PayloadTooLarge),  # small in memory, huge encoded
    ],
    ids=["deep", "just-over", "self-list", "self-dict", "huge-text", "wide", "shared"],
)
async def test_userdata_over_a_limit_is_refused(
    env: Env, value: Any, error: type[Exception]
) -> None:
    """update_userdata and start(userdata=) refuse a value over a limit, naming its key;
    the session keeps what it had and resumes."""
    async with env.keeper() as k:
        s = await k.start(userdata={"plan": "gold"})
        with pytest.raises(error, match=r"userdata\['bad'\]") as info:
            s.update_userdata(bad=value)
        assert "userdata['bad']" == info.value.field  # type: ignore[attr-defined]
        with pytest.raises(error, match=r"userdata\['bad'\]"):
            await k.start(userdata={"bad": value})
        assert {"plan": "gold"} == s.state.userdata
        state = await env.resumes(s)
    assert {"plan": "gold"} == state.userdata


@pytest.mark.parametrize("method", ["user_said", "user_partial", "agent_started"])
async def test_utterance_text_over_the_limit_is_refused(env: Env, method: str) -> None:
    """User and agent text over max_text_bytes (UTF-8) is refused; smaller text is kept."""
    async with env.keeper(limits=Limits(max_text_bytes=1000)) as k:
        s = await k.start()
        getattr(s, method)("é" * 500)  # 1000 bytes
        with pytest.raises(PayloadTooLarge, match="1002 bytes"):
            getattr(s, method)("é" * 501)
        await env.resumes(s)


async def test_a_checkpoint_over_a_limit_is_refused_to_the_tool(env: Env) -> None:
    """A too-deep checkpoint raises inside the tool, which can carry on."""
    RESULTS["deep"] = _deep(975)
    async with env.keeper() as k:
        s = await k.start()
        out = await s.run_tool("checkpointer", {"kind": "deep"}, call_id="c1")
        assert ("succeeded", "refused: checkpoint of call 'c1'") == (out.status, out.result)
        await env.resumes(s)


async def test_limits_are_configurable_on_the_keeper(env: Env) -> None:
    """Keeper(limits=Limits(...)) moves the depth and size caps both ways."""
    RESULTS["four"] = _deep(4)
    async with env.keeper(limits=Limits(max_depth=3, max_payload_bytes=64)) as k:
        s = await k.start()
        s.update_userdata(ok=_deep(3))
        with pytest.raises(PayloadTooDeep, match="deeper than 3 levels"):
            s.update_userdata(no=_deep(4))
        with pytest.raises(PayloadTooLarge, match="64-byte cap"):
            s.update_userdata(no="y" * 65)
        assert "failed" == (await s.run_tool("give", {"kind": "four"})).status
    async with env.keeper(limits=Limits(max_depth=150)) as k:
        s = await k.start()
        s.update_userdata(deep=_deep(150))
        assert _deep(150) == (await env.resumes(s)).userdata["deep"]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_depth": 0},
        {"max_depth": 201},
        {"max_payload_bytes": -1},
        {"max_text_bytes": "1"},
        {"max_depth": True},
    ],
)
def test_bad_limits_are_config_errors(bad: dict[str, Any]) -> None:
    """A limit that is not an int >= 1 is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=next(iter(bad))):
        Limits(**bad)


def test_keeper_refuses_limits_of_another_type() -> None:
    """Keeper(limits=...) takes a Limits only."""
    with pytest.raises(ConfigError, match="limits"):
        callstate.Keeper("memory://", limits={"max_depth": 3})  # type: ignore[arg-type]


def test_check_value_does_not_recurse() -> None:
    """The depth check itself walks a 100,000-deep value without a RecursionError."""
    with pytest.raises(PayloadTooDeep):
        check_value(_deep(100_000), field="x", limits=Limits(max_depth=200))
