"""``record_workflow``: the SDK's real ``VoicePipeline`` recorded into callstate, offline.

The pipeline runs the SDK's own STT → workflow → TTS steps with callstate's scripted
speech models, and its agents talk to the strict loopback Chat Completions server
through the SDK's real ``OpenAIChatCompletionsModel`` and ``AsyncOpenAI``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, function_tool, handoff
from agents.voice import (
    AudioInput,
    StreamedAudioInput,
    VoicePipeline,
    VoicePipelineConfig,
    VoiceStreamEvent,
)
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_agents import CONTINUE_NOTE, RecordedWorkflow, record_workflow
from callstate.journal.context import call_output
from callstate.testing import FakeClock
from callstate.testing.chat_server import Calls, ChatServer, FunctionCall, Reply
from callstate.testing.voice_models import ScriptedSTT, ScriptedTTS, silence, speech, text_of

from .extras import import_error
from .test_openai_agents import move_booking
from .test_openai_realtime import Gates, make_tools

NO_TRACE = RunConfig(tracing_disabled=True)
REPLY = "Your booking B1 is at eight tonight, and I sent a text to confirm it."


@pytest.fixture
async def server() -> AsyncIterator[ChatServer]:
    async with ChatServer() as srv:
        yield srv


@pytest.fixture
def gates() -> Gates:
    gates = Gates()
    gates.move.set()
    return gates


@pytest.fixture
async def keeper(gates: Gates) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(
        "memory://", secret=b"k" * 32, tools=make_tools(gates), clock=FakeClock()
    ) as k:
        yield k


def agents_for(server: ChatServer) -> Agent[Any]:
    """The booking agent (a guarded write, a handoff to billing) on the loopback model."""
    client = AsyncOpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
    model = OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
    billing = Agent(name="billing", instructions="You handle refunds.", model=model)
    return Agent(
        name="booking",
        instructions="You move bookings.",
        tools=[move_booking],
        handoffs=[billing],
        model=model,
    )


def pipeline(workflow: RecordedWorkflow) -> VoicePipeline:
    """The SDK's pipeline with the scripted speech models and no trace export."""
    config = VoicePipelineConfig(tracing_disabled=True)
    return VoicePipeline(
        workflow=workflow, stt_model=ScriptedSTT(), tts_model=ScriptedTTS(), config=config
    )


async def one_turn(workflow: RecordedWorkflow, said: str) -> str:
    """Run one caller turn through a fresh pipeline and return what its audio says."""
    result = await pipeline(workflow).run(AudioInput(buffer=speech(said)))
    return await heard_until(workflow.stream(result), "session_ended")


async def heard_until(events: AsyncIterator[VoiceStreamEvent], lifecycle: str) -> str:
    """Read ``events`` up to the lifecycle event ``lifecycle``; what their audio says."""
    audio: list[Any] = []
    async for event in events:
        if event.type == "voice_stream_event_audio" and event.data is not None:
            audio.append(event.data)
        if event.type == "voice_stream_event_lifecycle" and event.event == lifecycle:
            break
    return text_of(np.concatenate(audio)) if audio else ""


def messages_of(server: ChatServer, request: int, role: str) -> list[Any]:
    """The ``content`` of the messages with ``role`` in the server's ``request``-th body."""
    return [m.get("content") for m in server.requests[request]["messages"] if m["role"] == role]


async def test_a_turn_runs_a_guarded_write_once_and_the_model_gets_its_outcome(
    server: ChatServer, keeper: callstate.Keeper, gates: Gates
) -> None:
    """The model's tool call runs callstate's registered write once, its recorded outcome
    is the tool message of the next request, and the reply is recorded and voiced."""
    s = await keeper.start(agent="booking")
    server.queue(Calls(FunctionCall("move_booking", '{"booking_id": "B1", "time": "20:00"}', "c1")))
    server.queue(Reply("Done, B1 is at eight."))
    workflow = record_workflow(agents_for(server), s, run_config=NO_TRACE)
    voiced = await one_turn(workflow, "Move B1 to eight.")
    c1 = s.state.calls["c1"]
    assert (["move_booking"], "succeeded", 1) == (gates.runs, c1.status, c1.attempts)
    assert [call_output(c1)] == messages_of(server, 1, "tool")
    assert "Done, B1 is at eight." == voiced
    said = [(i.kind, i.text) for i in s.state.items if i.kind != "call"]
    assert [("user", "Move B1 to eight."), ("assistant", "Done, B1 is at eight.")] == said
    assert [] == server.errors


async def test_a_handoff_between_agents_is_a_callstate_handoff_and_the_target_continues(
    server: ChatServer, keeper: callstate.Keeper
) -> None:
    """The model's transfer to billing offers and accepts the call in callstate (epoch 2,
    the source frozen); billing answers with the continue note and takes the next turn."""
    s = await keeper.start(agent="booking")
    server.queue(Calls(FunctionCall("transfer_to_billing", "{}", "h1")))
    server.queue(Reply("I can refund that for you."), Reply("It is on its way."))
    workflow = record_workflow(agents_for(server), s, run_config=NO_TRACE)
    assert "I can refund that for you." == await one_turn(workflow, "I want a refund.")
    accepted = workflow.session
    assert (2, "billing", s.id) == (accepted.state.epoch, accepted.state.agent, accepted.id)
    assert accepted is not s
    (system,) = messages_of(server, 1, "system")
    assert system.startswith("You handle refunds.")
    assert system.endswith(CONTINUE_NOTE)
    assert "billing" == workflow.agent.name
    assert "It is on its way." == await one_turn(workflow, "Thanks, when?")
    (system,) = messages_of(server, 2, "system")
    assert system.endswith(CONTINUE_NOTE)
    users = messages_of(server, 2, "user")
    assert ["I want a refund.", "Thanks, when?"] == users
    with pytest.raises(callstate.CallstateError):
        await s.run_tool("check_availability", {"date": "today"}, call_id="late")
    assert [] == server.errors


@function_tool
async def refund(amount: int) -> str:
    """Refund an amount (its body never runs: callstate's registered tool does)."""
    raise AssertionError("the unguarded body ran")


async def test_a_handoff_given_as_the_sdks_handoff_guards_the_targets_tools(
    server: ChatServer, keeper: callstate.Keeper, gates: Gates
) -> None:
    """With ``handoff(billing)`` (the SDK's own ``Handoff``, its hook kept), the call is
    still a callstate handoff and billing's refund runs through the guard, once."""
    hooked: list[str] = []
    billing = Agent(name="billing", tools=[refund], model=agents_for(server).model)
    transfer = handoff(billing, on_handoff=lambda ctx: hooked.append("billing"))
    booking = Agent(name="booking", handoffs=[transfer], model=billing.model)
    s = await keeper.start(agent="booking")
    server.queue(Calls(FunctionCall("transfer_to_billing", "{}", "h1")))
    server.queue(Calls(FunctionCall("refund", '{"amount": 12}', "r1")), Reply("Refunded."))
    workflow = record_workflow(booking, s, run_config=NO_TRACE)
    assert "Refunded." == await one_turn(workflow, "Refund me twelve dollars.")
    accepted = workflow.session
    r1 = accepted.state.calls["r1"]
    assert (["billing"], ["refund"]) == (hooked, gates.runs)
    assert (2, "billing", "succeeded", 1) == (
        accepted.state.epoch,
        accepted.state.agent,
        r1.status,
        r1.attempts,
    )
    assert [] == server.errors


async def test_an_interruption_keeps_only_what_the_caller_heard(
    server: ChatServer, keeper: callstate.Keeper
) -> None:
    """The app stops playback part way into a reply of a streamed call: the reply is cut
    there, and the next turn's model sees only the heard part of it."""
    s = await keeper.start(agent="booking")
    server.queue(Reply(REPLY), Reply("On Friday."))
    workflow = record_workflow(agents_for(server), s, run_config=NO_TRACE)
    audio = StreamedAudioInput()
    result = await pipeline(workflow).run(audio)
    events = workflow.stream(result)
    await audio.add_audio(speech("When is my booking?"))
    await audio.add_audio(silence(100))
    assert REPLY == await heard_until(events, "turn_ended")
    heard_part = "Your booking B1 is at eight tonight,"
    assert heard_part == workflow.interrupt(played_ms=10 * len(heard_part) + 5)
    await audio.add_audio(speech("Which day?"))
    await audio.add_audio(silence(100))
    assert "On Friday." == await heard_until(events, "turn_ended")
    await audio.add_audio(None)
    await heard_until(events, "session_ended")
    workflow.finish_open()
    assert [heard_part] == messages_of(server, 1, "assistant")
    cut, answer = (i for i in s.state.items if i.kind == "assistant")
    assert (True, heard_part) == (cut.interrupted, cut.spoken)
    assert "and I sent a text to confirm it." == cut.unspoken
    assert (True, False, "On Friday.") == (answer.done, answer.interrupted, answer.spoken)
    assert [] == server.errors


async def test_a_barge_in_over_a_running_write_overtakes_it_and_the_model_gets_its_outcome(
    server: ChatServer, keeper: callstate.Keeper, gates: Gates
) -> None:
    """The app stops playback while the write runs: the call is overtaken, still runs once,
    the reply voicing it goes unheard, and the next turn's model gets the outcome."""
    gates.move.clear()
    s = await keeper.start(agent="booking")
    server.queue(Calls(FunctionCall("move_booking", '{"booking_id": "B1", "time": "20:00"}', "c1")))
    server.queue(Reply("Done, B1 is at eight."), Reply("Yes, B1 is at eight."))
    workflow = record_workflow(agents_for(server), s, run_config=NO_TRACE)
    audio = StreamedAudioInput()
    events = workflow.stream(await pipeline(workflow).run(audio))
    await audio.add_audio(np.concatenate([speech("Move B1 to eight."), silence(100)]))
    async with asyncio.timeout(5):
        while not gates.runs:  # noqa: ASYNC110 - the write starts inside the pipeline
            await asyncio.sleep(0)
    assert "" == workflow.interrupt(played_ms=0)
    assert s.state.calls["c1"].overtaken
    gates.move.set()
    await heard_until(events, "turn_ended")  # streamed, but the app plays none of it
    await audio.add_audio(np.concatenate([speech("Did it work?"), silence(100)]))
    await heard_until(events, "turn_ended")
    await audio.add_audio(None)
    await heard_until(events, "session_ended")
    c1 = s.state.calls["c1"]
    assert (["move_booking"], "succeeded", 1) == (gates.runs, c1.status, c1.attempts)
    assert [call_output(c1)] == messages_of(server, 2, "tool")
    assert [None] == messages_of(server, 2, "assistant")  # the call; no unheard reply
    unheard = next(i for i in s.state.items if i.kind == "assistant")
    assert (True, "", "Done, B1 is at eight.") == (
        unheard.interrupted,
        unheard.spoken,
        unheard.unspoken,
    )
    assert [] == server.errors


async def test_an_interruption_by_bytes_and_one_past_the_end(
    server: ChatServer, keeper: callstate.Keeper
) -> None:
    """``played_bytes`` of pcm16 cut a reply as ``played_ms`` does; a stop after a reply's
    last sample finishes it whole; a reply not yet played when the app stops is unheard."""
    s = await keeper.start(agent="booking")
    server.queue(Reply("Fine."), Reply(REPLY), Reply("Noted."))
    workflow = record_workflow(agents_for(server), s, run_config=NO_TRACE)
    await one_turn(workflow, "Hello.")
    assert "Fine." == workflow.interrupt(played_ms=60_000)
    await one_turn(workflow, "When is it?")
    assert "Your booking B1" == workflow.interrupt(played_bytes=480 * len("Your booking B1"))
    result = await pipeline(workflow).run(AudioInput(buffer=speech("Thanks.")))
    events = workflow.stream(result)
    await anext(events)  # turn_started: the reply is under way, none of its audio read
    assert "" == workflow.interrupt(played_ms=0)
    await heard_until(events, "session_ended")
    workflow.finish_open()
    fine, cut, unheard = (i for i in s.state.items if i.kind == "assistant")
    assert (True, False, "Fine.") == (fine.done, fine.interrupted, fine.spoken)
    assert (True, "Your booking B1") == (cut.interrupted, cut.spoken)
    assert (True, "", "Noted.") == (unheard.interrupted, unheard.spoken, unheard.unspoken)


async def test_a_resumed_session_seeds_the_agents_history(
    server: ChatServer, keeper: callstate.Keeper
) -> None:
    """After a drop, the resumed session's first turn gives the model the recovered
    conversation and the resume note before the caller's new turn, not a fresh start."""
    s = await keeper.start(agent="booking")
    server.queue(Reply(REPLY))
    first = record_workflow(agents_for(server), s, run_config=NO_TRACE)
    await one_turn(first, "When is my booking?")
    first.finish_open()  # the app played the reply out, then the line dropped
    await s.flush()
    resumed = await keeper.resume(s.id)
    server.queue(Reply("As I said, eight tonight."))
    workflow = record_workflow(agents_for(server), resumed, run_config=NO_TRACE)
    assert "As I said, eight tonight." == await one_turn(workflow, "Sorry, say again?")
    messages = server.requests[1]["messages"]
    assert ["system", "user", "assistant", "system", "user"] == [m["role"] for m in messages]
    assert ["When is my booking?", "Sorry, say again?"] == messages_of(server, 1, "user")
    assert [REPLY] == messages_of(server, 1, "assistant")
    assert resumed.recovery is not None
    assert resumed.recovery.resume_note == messages[3]["content"]
    workflow.finish_open()
    last = resumed.state.items[-1]
    assert (2, False) == (resumed.state.epoch, resumed.on_hold)
    assert ("assistant", "As I said, eight tonight.", True) == (last.kind, last.text, last.done)
    assert [] == server.errors


async def test_a_resumed_session_after_a_handoff_starts_with_the_agent_it_names(
    server: ChatServer, keeper: callstate.Keeper
) -> None:
    """A call handed to billing and then resumed is answered by billing, not booking."""
    s = await keeper.start(agent="booking")
    server.queue(Calls(FunctionCall("transfer_to_billing", "{}", "h1")), Reply("Refund sent."))
    first = record_workflow(agents_for(server), s, run_config=NO_TRACE)
    await one_turn(first, "I want a refund.")
    await first.session.flush()
    resumed = await keeper.resume(s.id)
    workflow = record_workflow(agents_for(server), resumed, run_config=NO_TRACE)
    assert "billing" == workflow.agent.name
    server.queue(Reply("Yes, it is sent."))
    await one_turn(workflow, "Did it go through?")
    (system, _note) = messages_of(server, 2, "system")
    assert system.startswith("You handle refunds.")
    assert [] == server.errors


async def test_interrupt_names_a_bad_played_position(
    server: ChatServer, keeper: callstate.Keeper
) -> None:
    """``interrupt`` refuses a negative, non-int or doubly given position, naming it."""
    s = await keeper.start(agent="booking")
    workflow = record_workflow(agents_for(server), s)
    with pytest.raises(callstate.ConfigError, match="played_ms must be a non-negative int, got -1"):
        workflow.interrupt(played_ms=-1)
    with pytest.raises(callstate.ConfigError, match=r"played_bytes .* got 1\.5"):
        workflow.interrupt(played_bytes=1.5)  # type: ignore[arg-type]
    with pytest.raises(callstate.ConfigError, match="one of played_ms or played_bytes"):
        workflow.interrupt(played_ms=1, played_bytes=2)
    with pytest.raises(callstate.ConfigError, match=r"sample_rate .* got 0"):
        record_workflow(agents_for(server), s, sample_rate=0)


def test_without_the_sdks_voice_group_the_import_names_the_extra() -> None:
    """Without numpy (the SDK's ``voice`` group) the adapter says `pip install callstate[agents]`."""
    out = import_error("callstate.adapters.openai_agents", "numpy")
    assert "pip install callstate[agents]" in out
