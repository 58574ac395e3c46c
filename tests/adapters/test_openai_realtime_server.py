"""The loopback Realtime server is strict, and the pure replay always builds valid sessions."""

# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from openai import AsyncOpenAI

from benchrun import run_bench
from callstate.adapters.openai_realtime import VOICE_NOTE, replay
from callstate.journal import events as ev
from callstate.journal.state import fold
from callstate.testing.realtime_server import Call, RealtimeServer, Say
from callstate.testing.realtime_session import validate_client_event

from .test_openai_realtime import MODEL, client, server  # noqa: F401 - fixtures


async def errors_for(server: RealtimeServer, n: int) -> list[dict[str, Any]]:
    await server.wait_for(lambda: len(server.current.errors) >= n)
    return server.current.errors


async def test_server_rejects_what_a_real_session_rejects(
    server: RealtimeServer, client: AsyncOpenAI
) -> None:
    """Unknown call ids, a second response, truncation past the audio and malformed events fail."""
    server.queue(Say("Hello there", audio_ms=1000, chunks=2, pause_after=1))
    async with client.realtime.connect(model=MODEL) as conn:
        await conn.recv()
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_nope", "output": "{}"},
            event_id="e1",
        )
        await conn.response.create(event_id="e2")
        await server.wait_for(lambda: server.current.audio_ms)
        await conn.response.create(event_id="e3")
        item_id = next(iter(server.current.audio_ms))
        await conn.conversation.item.truncate(
            item_id=item_id, audio_end_ms=900, content_index=0, event_id="e4"
        )
        await conn.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "colour": 1},
                "event_id": "e5",
            }
        )  # type: ignore[arg-type]
        await conn.send({"type": "nonsense.event", "event_id": "e6"})  # type: ignore[arg-type]
        errors = await errors_for(server, 5)
        server.resume()
    assert [
        ("invalid_tool_call_id", "e1", "item.call_id"),
        ("conversation_already_has_active_response", "e3", None),
        ("invalid_value", "e4", "audio_end_ms"),
        ("unknown_parameter", "e5", "session.colour"),
        ("invalid_value", "e6", "type"),
    ] == [(e["code"], e.get("event_id"), e.get("param")) for e in errors]
    assert 2 == len(server.malformed)


async def test_server_takes_one_output_per_call_under_a_reused_id(
    server: RealtimeServer, client: AsyncOpenAI
) -> None:
    """Two calls under one id take two outputs; a third output for that id is refused."""
    server.queue(Call("lookup", "{}", call_id="call_0"))
    server.queue(Call("lookup", "{}", call_id="call_0"))
    async with client.realtime.connect(model=MODEL) as conn:
        await conn.recv()
        for n in range(2):
            await conn.response.create(event_id=f"r{n}")
            await server.wait_for(lambda n=n: len(server.current.responses) == n + 1)
            await server.wait_for(lambda: server.current.active is None)
        for n in range(3):
            await conn.conversation.item.create(
                item={"type": "function_call_output", "call_id": "call_0", "output": "{}"},
                event_id=f"o{n}",
            )
        errors = await errors_for(server, 1)
    assert [("invalid_tool_call_id", "o2")] == [(e["code"], e.get("event_id")) for e in errors]


async def test_server_drops_and_expires_sessions(
    server: RealtimeServer, client: AsyncOpenAI
) -> None:
    """A drop closes the socket with the given code; expiry sends session_expired then closes."""
    async with client.realtime.connect(model=MODEL) as conn:
        await conn.recv()
        await server.drop(code=4001)
        codes: list[int] = []
        try:
            await conn.recv()
        except Exception as exc:  # the websocket's ConnectionClosedError
            codes.append(exc.rcvd.code)  # type: ignore[attr-defined]
    async with client.realtime.connect(model=MODEL) as conn:
        await conn.recv()
        await server.expire()
        err = await conn.recv()
    assert [4001] == codes
    assert ("error", "session_expired") == (err.type, err.error.code)  # type: ignore[union-attr]


def _state(ops: list[tuple[str, str, bool]]) -> Any:
    """Fold a session from (kind, text, done) ops: user turns, agent turns, tool calls."""
    events: list[ev.Event] = [ev.SessionStarted(seq=1, session_id="s", agent="a")]
    for n, (kind, text, done) in enumerate(ops):
        if kind == "user":
            events.append(ev.UserTurn(text=text))
        elif kind == "agent":
            events.append(ev.AgentStarted(utterance_id=f"u{n}", text=text))
            events.append(
                ev.AgentProgress(
                    utterance_id=f"u{n}", spoken_text=text[: len(text) // 2], text=text
                )
            )
            if done:
                events.append(ev.AgentFinished(utterance_id=f"u{n}"))
        else:
            events.append(ev.ToolRequested(call_id=f"c{n}", name="lookup", args={"q": text}))
            if done:
                events.append(ev.ToolSucceeded(call_id=f"c{n}", result={"q": text}))
    return fold(msgspec.structs.replace(e, seq=i + 1) for i, e in enumerate(events))


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["user", "agent", "call"]), st.text(min_size=1, max_size=20), st.booleans()
    ),
    max_size=12,
)


@given(_OPS)
def test_replay_is_valid_ordered_and_answers_each_call_once(
    ops: list[tuple[str, str, bool]],
) -> None:
    """Replay events validate, every output follows its call, each call is answered at most once."""
    rep = replay(_state(ops), config={"instructions": "x"}, note="The line dropped.", prefix="cs1i")
    assert [] == [e for e in rep.events if validate_client_event(e) is not None]
    called: list[str] = []
    answered: list[str] = []
    for e in rep.events[1:]:
        item = e["item"]
        if item["type"] == "function_call":
            called.append(item["call_id"])
        elif item["type"] == "function_call_output":
            assert item["call_id"] in called
            answered.append(item["call_id"])
    assert sorted(set(answered)) == sorted(answered)
    assert [f"c{n}" for n, (k, _, done) in enumerate(ops) if k == "call" and done] == answered
    assert rep.events[-1]["item"]["content"][0]["text"].endswith(VOICE_NOTE)
    assert all(len(i) <= 32 for i in rep.item_ids)


def test_bench_prints_its_metrics() -> None:
    """bench/bench_realtime.py runs at tiny sizes and prints one ``name value`` per metric."""
    metrics = run_bench("bench_realtime.py", "--turns", "4", "--rounds", "2", timeout=120)
    assert [
        "realtime_replayed_items",
        "realtime_first_ack_p50",
        "realtime_first_ack_p95",
        "realtime_first_ack_max",
        "realtime_replay_sent_p50",
        "realtime_replay_sent_p95",
    ] == list(metrics)


def test_readme_example_is_the_example_file_and_runs() -> None:
    """The README's Realtime example is examples/openai_realtime_agent.py, which resumes a drop."""
    root = Path(__file__).resolve().parents[2]
    example = (root / "examples" / "openai_realtime_agent.py").read_text()
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## OpenAI Realtime") :]
    block = section[
        section.index("```python\n") + 10 : section.index("```\n", section.index("```python"))
    ]
    assert example[example.index("import asyncio") :] == block
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "openai_realtime_agent.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert "resumed (drop): 4 items replayed" == lines[0]
    assert "agent: Done: your booking is now at eight." == lines[1]
    assert lines[-2].startswith('tool | {"status":"succeeded"')
