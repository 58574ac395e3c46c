"""Barge-ins on a real LiveKit ``AgentSession`` while a write runs, through ``session.interrupt()``.

Each one leaves LiveKit with a tool output nobody heard (or, past the interruption
timeout, a deferred reply that would talk over the caller); callstate holds the result
and has it announced on the caller's next turn.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from livekit.agents import llm
from livekit.agents.voice import speech_handle

from .test_livekit_harness import BOOKING, Call, Reply, items_of, system_texts, until

MOVE = [
    Reply(["Sure, ", "I'm moving ", "it now."], [("c1", "move_booking", BOOKING)]),
    Reply(["Done: your table is at eight."]),
]
MOVED = {"booking_id": "B1", "time": "20:00", "moved": True}


def outputs(call: Call, call_id: str) -> list[llm.FunctionCallOutput]:
    return [
        i
        for i in call.lk.history.items
        if isinstance(i, llm.FunctionCallOutput) and i.call_id == call_id
    ]


def assistant_texts(call: Call) -> list[tuple[str, bool]]:
    return [
        (i.text_content or "", i.interrupted)
        for i in call.lk.history.items
        if isinstance(i, llm.ChatMessage) and i.role == "assistant"
    ]


def announced(seen: list[dict[str, Any]]) -> list[str]:
    return [t for t in system_texts(seen) if "move_booking (call c1)" in t]


HELD = "do not voice this"  # what the model is told while a result is held


def model_texts(seen: list[dict[str, Any]]) -> list[str]:
    """Every text the model was given: messages and tool outputs."""
    return [
        *(
            "".join(c for c in i["content"] if isinstance(c, str))
            for i in items_of(seen, "message")
        ),
        *(o["output"] for o in items_of(seen, "function_call_output")),
    ]


def model_assistant_texts(seen: list[dict[str, Any]]) -> list[str]:
    return [
        "".join(c for c in i["content"] if isinstance(c, str))
        for i in items_of(seen, "message")
        if i["role"] == "assistant"
    ]


async def next_turn_announces(call: Call) -> None:
    """The caller's next turn: the reconciler announces the write, the model is told."""
    await call.lk.run(user_input="okay")
    assert "announced" == call.cs.state.calls["c1"].delivery
    notes = announced(call.llm.seen[-1])
    assert 1 == len(notes)
    assert "announced" == json.loads(notes[0].split("how it ended: ", 1)[1])["delivery"]
    # the held note is gone from the model's context once the result is announced
    assert [] == [t for t in model_texts(call.llm.seen[-1]) if HELD in t]
    assert ("assistant", "Done: your table is at eight.") == (
        call.cs.state.items[-1].kind,
        call.cs.state.items[-1].text,
    )


async def test_barge_in_during_the_pre_tool_speech() -> None:
    """Cut off mid-sentence: the heard part is kept, the write is held, then announced."""
    async with Call(MOVE) as call:
        call.output.open_for = 1  # the caller hears "Sure, " and then talks over the rest
        run = call.lk.run(user_input="move my booking to eight")
        await until(lambda: call.tools.ran == ["move_booking"] and call.output.waiting)
        done = call.lk.interrupt()
        await until(lambda: call.cs.state.calls["c1"].overtaken)
        call.output.release()
        call.tools.release["move_booking"].set()
        await done
        await run
        # LiveKit: the result is in the history, asked for no reply, and nobody voiced it
        [out] = outputs(call, "c1")
        assert False is out.reply_required
        assert call.lk.history.items[-1] is out
        assert 1 == len(call.llm.seen)
        cut = next(i for i in call.cs.state.items if i.kind == "assistant")
        assert ("Sure,", True, "I'm moving it now.") == (cut.text, cut.interrupted, cut.unspoken)
        assert ("succeeded", "held", MOVED) == (
            call.cs.state.calls["c1"].status,
            call.cs.state.calls["c1"].delivery,
            call.cs.state.calls["c1"].result,
        )
        # LiveKit stores "Sure, I'm moving " as said; the caller heard only "Sure, "
        assert [("Sure,", True)] == assistant_texts(call)
        await next_turn_announces(call)
        assert ["Sure,"] == model_assistant_texts(call.llm.seen[-1])
        await call.lk.run(user_input="thanks")  # and it stays so, with the held note gone
        assert [] == [t for t in model_texts(call.llm.seen[-1]) if HELD in t]
        assert ["Sure,", "Done: your table is at eight."] == model_assistant_texts(
            call.llm.seen[-1]
        )[:2]


async def test_barge_in_after_the_pre_tool_speech_while_the_tool_runs() -> None:
    """The reply LiveKit skips after a barge-in during the tool is owed and announced."""
    async with Call(MOVE) as call:
        run = call.lk.run(user_input="move my booking to eight")
        await until(
            lambda: (
                call.tools.ran == ["move_booking"]
                and [("Sure, I'm moving it now.", False)] == assistant_texts(call)
            )
        )
        done = call.lk.interrupt()
        await until(lambda: call.cs.state.calls["c1"].overtaken)
        call.tools.release["move_booking"].set()
        await done
        await run
        [out] = outputs(call, "c1")
        assert True is out.reply_required  # asked for a reply ...
        assert call.lk.history.items[-1] is out  # ... that never came
        assert 1 == len(call.llm.seen)
        assert "held" == call.cs.state.calls["c1"].delivery
        await next_turn_announces(call)


async def test_tool_outliving_the_interruption_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deferred reply that would voice a held result is stopped; the next turn announces it."""
    monkeypatch.setattr(speech_handle, "INTERRUPTION_TIMEOUT", 3600.0)  # fired by the test
    handles: list[speech_handle.SpeechHandle] = []
    replies = [MOVE[0], Reply(["Your booking moved to eight."]), MOVE[1]]
    async with Call(replies) as call:
        call.lk.on("speech_created", lambda ev: handles.append(ev.speech_handle))
        call.output.open_for = 1
        run = call.lk.run(user_input="move my booking to eight")
        await until(lambda: call.tools.ran == ["move_booking"] and call.output.waiting)
        done = call.lk.interrupt()
        await until(lambda: [("Sure,", True)] == assistant_texts(call))
        call.output.release()
        # LiveKit's own timeout callback, fired now instead of 5 s later
        timer = handles[0]._interrupt_timeout_handle
        assert timer is not None
        fire, args = timer._callback, timer._args
        timer.cancel()
        fire(*args)
        await until(lambda: 1 == len(outputs(call, "c1")))
        assert "in progress" in str(outputs(call, "c1")[0].output)  # LiveKit's placeholder
        call.tools.release["move_booking"].set()
        await done
        await run
        await until(lambda: 1 == len(call.recovery.suppressed))
        await until(lambda: handles[-1].done())
        final = outputs(call, "c1_final")
        assert 1 == len(final)  # the deferred result is in LiveKit's history ...
        assert [("Sure,", True)] == assistant_texts(call)  # ... but not voiced
        assert [handles[-1].id] == call.recovery.suppressed
        assert "held" == call.cs.state.calls["c1"].delivery
        assert ["user", "assistant", "call"] == [i.kind for i in call.cs.state.items]
        await next_turn_announces(call)
        assert MOVED == call.cs.state.calls["c1"].result
        seen_outputs = items_of(call.llm.seen[-1], "function_call_output")
        assert ["c1", "c1_final"] == [o["call_id"] for o in seen_outputs]


CHECK = [Reply(["Let me look."], [("r1", "check_availability", {"date": "mon"})])]


async def interrupted_read(call: Call) -> None:
    """A read overtaken by a barge-in after its speech: its result is held."""
    run = call.lk.run(user_input="is monday free")
    await until(lambda: call.tools.ran == ["check_availability"])
    await until(lambda: [("Let me look.", False)] == assistant_texts(call))
    done = call.lk.interrupt()
    await until(lambda: call.cs.state.calls["r1"].overtaken)
    call.tools.release["check_availability"].set()
    await done
    await run
    assert "held" == call.cs.state.calls["r1"].delivery


@pytest.mark.parametrize(
    ("said", "decision"), [("uh-huh, go on", "delivered"), ("what about tuesday?", "discarded")]
)
async def test_a_held_read_is_delivered_or_dropped_as_the_next_turn_decides(
    said: str, decision: str
) -> None:
    """A backchannel gets the read delivered; a new question drops it; the model is told."""
    async with Call([*CHECK, Reply(["Right."])]) as call:
        await interrupted_read(call)
        await call.lk.run(user_input=said)
        assert decision == call.cs.state.calls["r1"].delivery
        [note] = [t for t in system_texts(call.llm.seen[-1]) if "check_availability" in t]
        assert decision == json.loads(note.split("how it ended: ", 1)[1])["delivery"]


async def test_barge_in_before_anything_played_keeps_nothing_as_heard() -> None:
    """Cut off before the output took a word: callstate keeps nothing of it as heard."""
    async with Call(MOVE) as call:
        call.output.open_for = 0
        run = call.lk.run(user_input="move my booking to eight")
        await until(lambda: call.tools.ran == ["move_booking"] and call.output.waiting)
        done = call.lk.interrupt()
        await until(lambda: call.cs.state.calls["c1"].overtaken)
        call.output.release()
        call.tools.release["move_booking"].set()
        await done
        await run
        # LiveKit counts the chunk it was handing to the output as said; nobody heard it
        assert [] == assistant_texts(call)
        cut = next(i for i in call.cs.state.items if i.kind == "assistant")
        assert ("", True) == (cut.text, cut.interrupted)
        assert cut.unspoken.startswith("Sure,")  # kept aside, never put in the context
        assert [] == [m for m in call.cs.context() if m["role"] == "assistant" and m["content"]]
        await next_turn_announces(call)
        assert [] == model_assistant_texts(call.llm.seen[-1])


async def test_interruption_timeout_during_the_speech_commits_nothing_in_livekit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LiveKit drops the whole turn when the timeout cuts the speech; callstate keeps it."""
    monkeypatch.setattr(speech_handle, "INTERRUPTION_TIMEOUT", 3600.0)  # fired by the test
    handles: list[speech_handle.SpeechHandle] = []
    async with Call(MOVE) as call:
        call.lk.on("speech_created", lambda ev: handles.append(ev.speech_handle))
        call.output.open_for = 1
        run = call.lk.run(user_input="move my booking to eight")
        await until(lambda: call.tools.ran == ["move_booking"] and call.output.waiting)
        done = call.lk.interrupt()
        timer = handles[0]._interrupt_timeout_handle
        assert timer is not None
        fire, args = timer._callback, timer._args
        timer.cancel()
        fire(*args)  # while the speech is still being forwarded
        await done
        await run
        call.output.release()
        call.tools.release["move_booking"].set()
        await until(lambda: call.cs.state.calls["c1"].terminal)
        assert [] == assistant_texts(call)
        assert [] == [i for i in call.lk.history.items if i.type.startswith("function_call")]
        assert ("succeeded", "held") == (
            call.cs.state.calls["c1"].status,
            call.cs.state.calls["c1"].delivery,
        )
        await next_turn_announces(call)
        seen = call.llm.seen[-1]  # the call is put back into the model's context
        assert ["c1"] == [i["call_id"] for i in items_of(seen, "function_call")]
        [out] = items_of(seen, "function_call_output")
        assert MOVED == json.loads(out["output"])["result"]
