"""Fuzzing what a session records: userdata, tool arguments and tool results that are
deep, wide, self-referencing, huge or not JSON at all. Only CallstateError subclasses
escape, every call ends with an outcome, and whatever was accepted still loads."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import strategies as st

import callstate
from callstate.journal import events as ev
from callstate.journal.limits import Limits, check_limits
from fuzzing import EXAMPLES, fuzz, hostile_text, hostile_values

LIMITS = Limits()
SECRET = b"fuzz-payload-secret-0123456789abcd"
#: Stack frames a restore may already be inside when it decodes an event.
RESTORE_DEPTH = 250


def _at_depth(frames: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` called ``frames`` Python frames further down the stack."""
    if frames <= 0:
        return fn()
    return _at_depth(frames - 1, fn)


def _events(value: Any) -> list[ev.Event]:
    return [
        ev.UserdataPatch(seq=2, at=1.0, set={"v": value}),
        ev.ToolRequested(seq=3, at=1.0, call_id="c1", name="t", args={"a": value}),
        ev.ToolProgress(seq=4, at=1.0, call_id="c1", data={"p": value}),
        ev.ToolSucceeded(seq=5, at=1.0, call_id="c1", result=value),
        ev.SessionStarted(seq=1, at=1.0, session_id="s", agent="a", userdata={"u": value}),
    ]


def test_recording_checks_keep_everything_loadable() -> None:
    """On >= EXAMPLES hostile values, each event carrying one is refused with a
    CallstateError or encodes to bytes that decode again deep inside a restore."""
    accepted = [0]

    def check(value: Any) -> None:
        for event in _events(value):
            try:
                check_limits(event, LIMITS)
                data = ev.check_event(event)
            except callstate.CallstateError:
                continue
            accepted[0] += 1
            again = _at_depth(RESTORE_DEPTH, lambda data=data: ev.decode_event(data))
            assert data == ev.encode_event(again)

    assert RESTORE_DEPTH + 100 < sys.getrecursionlimit()
    assert fuzz(hostile_values, check, EXAMPLES) >= EXAMPLES
    assert accepted[0] > 0


tools = callstate.ToolRegistry()
RESULT: list[Any] = [None]


@tools.tool()
async def echo(**kwargs: Any) -> Any:
    return RESULT[0]


@tools.tool(effect="write")
async def echo_write(**kwargs: Any) -> Any:
    return RESULT[0]


class Live:
    """A keeper on a memory store, driven from sync hypothesis cases; a fresh session
    every 50 cases keeps each one small."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.store = callstate.MemoryStore()
        self.keeper = callstate.Keeper(self.store, secret=SECRET, tools=tools, sweep_every=None)
        self.session: callstate.Session | None = None
        self.sessions: list[str] = []
        self.cases = 0

    def current(self) -> callstate.Session:
        if self.session is None or self.cases % 50 == 0:
            self.session = self.runner.run(self.keeper.start(userdata={"n": 0}))
            self.sessions.append(self.session.id)
        self.cases += 1
        return self.session

    def record(self, case: tuple[Any, Any, str, Any]) -> None:
        """Userdata, arguments and a result from the case; only typed errors escape."""
        value, args, tool, key = case
        s = self.current()
        with contextlib.suppress(callstate.CallstateError):
            s.update_userdata({key: value})
        RESULT[0] = value
        try:
            out = self.runner.run(s.run_tool(tool, args))
        except callstate.CallstateError:
            return
        assert out.status in ("succeeded", "failed")
        call = s.state.calls[out.call_id]
        assert call.terminal


@pytest.fixture
def live() -> Iterator[Live]:
    """A live keeper on a memory store in its own loop."""
    with asyncio.Runner() as runner:
        target = Live(runner)
        runner.run(target.keeper.open())
        try:
            yield target
        finally:
            runner.run(target.keeper.close())


cases = st.tuples(
    hostile_values,
    st.one_of(
        st.dictionaries(hostile_text, hostile_values, max_size=3),
        hostile_values,  # not even a dict
    ),
    st.sampled_from(["echo", "echo_write", "missing"]),
    st.sampled_from(["a", "b", "", "\x00", "\ud800", 1, None]),
)


def test_userdata_args_and_results_through_a_session(live: Live) -> None:
    """>= EXAMPLES cases through update_userdata and run_tool: only CallstateErrors, every
    call ends; then every session resumes in a new keeper with every call ended."""
    assert fuzz(cases, live.record, EXAMPLES) >= EXAMPLES
    live.runner.run(live.keeper.close())

    async def resume_all() -> None:
        async with callstate.Keeper(live.store, secret=SECRET, tools=tools, sweep_every=None) as k:
            for sid in live.sessions:
                s = await k.resume(sid)
                assert all(c.terminal for c in s.state.calls.values())
                assert isinstance(s.context(), list)

    live.runner.run(resume_all())
