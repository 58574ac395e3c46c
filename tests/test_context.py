"""State → OpenAI chat messages: valid for the API, calls paired, text as heard."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageFunctionToolCallParam, ChatCompletionMessageParam
from pydantic import TypeAdapter

from callstate.journal import events as ev
from callstate.journal.context import build_messages
from callstate.journal.state import SessionState, fold

_messages = TypeAdapter(list[ChatCompletionMessageParam])
_tool_call = TypeAdapter(ChatCompletionMessageFunctionToolCallParam)


def check_messages(messages: list[dict[str, Any]]) -> None:
    """Fail unless ``messages`` is what the OpenAI chat API accepts, calls paired one to one."""
    _messages.validate_python(messages)
    seen: set[str] = set()
    i = 0
    while i < len(messages):
        m = messages[i]
        assert "tool" != m["role"], f"tool message {i} does not follow its assistant tool_calls"
        if m["role"] == "assistant" and m.get("tool_calls"):
            ids = [tc["id"] for tc in m["tool_calls"]]
            for tc in m["tool_calls"]:
                _tool_call.validate_python(tc)
                json.loads(tc["function"]["arguments"])
            results = messages[i + 1 : i + 1 + len(ids)]
            assert ids == [r.get("tool_call_id") for r in results if r["role"] == "tool"]
            assert seen.isdisjoint(ids)
            seen.update(ids)
            for r in results:
                json.loads(r["content"])
            i += 1 + len(ids)
            continue
        i += 1


def _fold(*specs: tuple[type[ev.Event], dict[str, Any]]) -> SessionState:
    out: list[ev.Event] = [ev.SessionStarted(seq=1, session_id="s", agent="a")]
    for cls, fields in specs:
        out.append(cls(seq=len(out) + 1, **fields))
    return fold(out)


def test_interrupted_text_appears_as_heard_and_calls_pair_with_results() -> None:
    """The cut utterance shows only what was heard; each call has exactly one result."""
    state = _fold(
        (ev.UserTurn, {"text": "Move my booking to eight"}),
        (ev.AgentStarted, {"utterance_id": "u1", "text": "Sure, moving it to eight now."}),
        (ev.ToolRequested, {"call_id": "c1", "name": "move", "args": {"t": "20:00"}}),
        (ev.ToolStarted, {"call_id": "c1"}),
        (
            ev.Interrupted,
            {
                "utterance_id": "u1",
                "heard_text": "Sure,",
                "unspoken_text": "moving it",
                "overtaken": ["c1"],
            },
        ),
        (ev.ToolSucceeded, {"call_id": "c1", "result": {"moved": True}}),
        (ev.ToolDelivery, {"call_id": "c1", "decision": "held"}),
        (ev.UserTurn, {"text": "wait"}),
    )
    messages = build_messages(state, system="You book things.")
    check_messages(messages)
    assert [
        ("system", "You book things."),
        ("user", "Move my booking to eight"),
        ("assistant", "Sure,"),
        ("assistant", None),
        ("tool", None),
        ("user", "wait"),
    ] == [(m["role"], m["content"] if m["role"] != "tool" else None) for m in messages]
    result = json.loads(messages[4]["content"])
    assert ("succeeded", {"moved": True}, "held") == (
        result["status"],
        result["result"],
        result["delivery"],
    )


def test_a_call_without_an_outcome_still_has_one_result() -> None:
    """A running call's result says running; an unknown one tells the model to verify."""
    state = _fold(
        (ev.ToolRequested, {"call_id": "c1", "name": "slow"}),
        (ev.ToolStarted, {"call_id": "c1"}),
        (ev.ToolRequested, {"call_id": "c2", "name": "pay", "effect": "write"}),
        (ev.ToolStarted, {"call_id": "c2"}),
        (ev.ToolInDoubt, {"call_id": "c2", "resolution": "unknown"}),
    )
    messages = build_messages(state)
    check_messages(messages)
    assert ["running", "unknown"] == [json.loads(m["content"])["status"] for m in messages[1:]]
    assert "verify with the caller" in messages[2]["content"]


def test_a_call_requested_twice_appears_once() -> None:
    """A call id has one tool_calls entry and one result even if requested twice."""
    state = _fold(
        (ev.ToolRequested, {"call_id": "c1", "name": "t"}),
        (ev.ToolSucceeded, {"call_id": "c1", "result": 1}),
        (ev.ToolRequested, {"call_id": "c1", "name": "t"}),
    )
    messages = build_messages(state)
    check_messages(messages)
    assert 1 == sum(1 for m in messages if m["role"] == "tool")


# -- any interleaving ----------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("user"), st.text(max_size=8)),
    st.tuples(st.just("say"), st.text(max_size=12)),
    st.tuples(st.just("progress"), st.integers(0, 12)),
    st.tuples(st.just("finish"), st.none()),
    st.tuples(st.just("interrupt"), st.integers(0, 12)),
    st.tuples(st.just("request"), st.sampled_from(["read", "write"])),
    st.tuples(st.just("start"), st.integers(0, 5)),
    st.tuples(st.just("land"), st.tuples(st.integers(0, 5), st.sampled_from(["ok", "fail", "cancel", "unknown"]))),
    st.tuples(st.just("deliver"), st.tuples(st.integers(0, 5), st.sampled_from(["held", "delivered", "discarded", "announced", "compensated"]))),
)  # fmt: skip


def _script(ops: list[tuple[str, Any]]) -> SessionState:
    specs: list[tuple[type[ev.Event], dict[str, Any]]] = []
    utterance: tuple[str, str] | None = None
    calls: list[str] = []
    for kind, arg in ops:
        if kind == "user":
            specs.append((ev.UserTurn, {"text": arg}))
        elif kind == "say":
            utterance = (f"u{len(specs)}", arg)
            specs.append((ev.AgentStarted, {"utterance_id": utterance[0], "text": arg}))
        elif kind == "progress" and utterance is not None:
            specs.append(
                (
                    ev.AgentProgress,
                    {"utterance_id": utterance[0], "spoken_text": utterance[1][:arg]},
                )
            )
        elif kind == "finish" and utterance is not None:
            specs.append((ev.AgentFinished, {"utterance_id": utterance[0]}))
            utterance = None
        elif kind == "interrupt":
            uid, text = utterance if utterance is not None else (None, "")
            specs.append(
                (
                    ev.Interrupted,
                    {
                        "utterance_id": uid,
                        "heard_text": text[:arg],
                        "unspoken_text": text[arg:],
                        "overtaken": list(calls),
                    },
                )
            )
            utterance = None
        elif kind == "request":
            calls.append(f"c{len(calls)}")
            specs.append(
                (
                    ev.ToolRequested,
                    {"call_id": calls[-1], "name": "t", "effect": arg, "args": {"n": 1}},
                )
            )
        elif kind == "start" and calls:
            specs.append((ev.ToolStarted, {"call_id": calls[arg % len(calls)]}))
        elif kind == "land" and calls:
            cid = calls[arg[0] % len(calls)]
            specs.append(
                {
                    "ok": (ev.ToolSucceeded, {"call_id": cid, "result": {"v": [1, "x"]}}),
                    "fail": (ev.ToolFailed, {"call_id": cid, "error": "no"}),
                    "cancel": (ev.ToolCancelled, {"call_id": cid, "reason": "r"}),
                    "unknown": (ev.ToolInDoubt, {"call_id": cid, "resolution": "unknown"}),
                }[arg[1]]
            )
        elif kind == "deliver" and calls:
            specs.append(
                (ev.ToolDelivery, {"call_id": calls[arg[0] % len(calls)], "decision": arg[1]})
            )
    return _fold(*specs)


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=30))
def test_any_interleaving_gives_messages_the_api_accepts(ops: list[tuple[str, Any]]) -> None:
    """For any history, every call appears once with exactly one result, and the API types validate."""
    state = _script(ops)
    messages = build_messages(state)
    check_messages(messages)
    tool_ids = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert sorted(state.calls) == sorted(tool_ids)
