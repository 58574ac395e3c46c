"""An OpenAI Agents SDK voice pipeline call recorded by callstate: a barge-in, a handoff, a drop.

The SDK's own ``VoicePipeline`` (speech to text, an ``Agent``, text to speech) runs a
restaurant's ``booking`` agent that can hand off to ``billing``; callstate records the
call, books the table once through its guard, cuts the reply the caller talked over where playback
stopped, turns the SDK's handoff into a callstate handoff (epoch+1, the target carries
on without a greeting) and, when the caller's link drops, resumes the session in a new
pipeline whose agent starts from the recovered conversation. Runs offline with
callstate's scripted speech models and loopback Chat Completions server; use the SDK's
OpenAI models (and a real ``OPENAI_API_KEY``) for a real call.

    python examples/openai_agents_voice.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, function_tool
from agents.voice import StreamedAudioInput, VoicePipeline
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_agents import RecordedWorkflow, record_workflow
from callstate.testing.chat_server import Calls, ChatServer, FunctionCall, Reply
from callstate.testing.voice_models import ScriptedSTT, ScriptedTTS, silence, speech

tools = callstate.ToolRegistry()
SECRET = b"use-32-random-bytes-in-production"  # signs handoff packages and tokens
OFFLINE = {"tracing_disabled": True}  # no trace export
tables: list[str] = []  # what the restaurant's system really booked


@tools.tool(effect="write", idempotent=True)
async def book_table(party: int, time: str, *, ctx: callstate.ToolContext) -> dict[str, object]:
    tables.append(f"{party} at {time}")  # ctx.idempotency_key makes a re-run safe
    return {"party": party, "time": time, "booked": True}


@function_tool(name_override="book_table")
async def book_table_for_the_model(party: int, time: str) -> str:
    """Book a table for ``party`` people at ``time``."""
    raise NotImplementedError  # the body callstate runs is the registered tool's


def agents_on(server: ChatServer) -> Agent[Any]:
    """The booking agent, which hands billing questions to the billing agent."""
    llm = OpenAIChatCompletionsModel(
        model="gpt-4o-mini", openai_client=AsyncOpenAI(api_key="sk-test", base_url=server.url)
    )
    billing = Agent(name="billing", instructions="You answer questions on deposits.", model=llm)
    tools_ = [book_table_for_the_model]
    return Agent(name="booking", model=llm, tools=tools_, handoffs=[billing])


class Line:
    """The caller's side: their speech goes in, the pipeline's replies come out."""

    def __init__(self, workflow: RecordedWorkflow) -> None:
        pipeline = VoicePipeline(
            workflow=workflow, stt_model=ScriptedSTT(), tts_model=ScriptedTTS(), config=OFFLINE
        )
        self.workflow, self.pipeline = workflow, pipeline
        self.audio = StreamedAudioInput()

    async def open(self) -> None:
        self.events = self.workflow.stream(await self.pipeline.run(self.audio))

    async def say(self, text: str) -> None:
        """The caller says ``text``, then the reply's audio streams out."""
        await self.audio.add_audio(np.concatenate([speech(text), silence(100)]))
        async for event in self.events:
            # a real app plays each voice_stream_event_audio's ``data`` here
            if event.type == "voice_stream_event_lifecycle" and event.event == "turn_ended":
                break

    async def hang_up(self) -> None:
        await self.audio.add_audio(None)
        async for _ in self.events:
            pass


async def main() -> None:
    async with (
        callstate.Keeper("memory://", secret=SECRET, tools=tools) as keeper,
        ChatServer() as server,
    ):
        session = await keeper.start(agent="booking", caller="+15551234567")
        args = '{"party": 2, "time": "20:00"}'
        server.queue(Calls(FunctionCall("book_table", args, "c1")))
        server.queue(Reply("Done, a table for two at eight, and I sent you a text."))
        server.queue(Calls(FunctionCall("transfer_to_billing", "{}", "h1")))
        server.queue(Reply("I can see your deposit of twenty dollars."))
        server.queue(Reply("Yes, it is refundable until six."))

        workflow = record_workflow(agents_on(server), session, run_config=RunConfig(**OFFLINE))
        line = Line(workflow)
        await line.open()
        await line.say("Please book a table for two at eight tonight.")
        workflow.interrupt(played_ms=320)  # the caller talks over the reply
        await line.say("Thanks. I have a question about the deposit.")
        print(f"handoff: booking -> {workflow.agent.name}")
        workflow.finish_open()  # the reply played out
        await line.hang_up()  # then the caller's link drops
        await workflow.session.flush()

        resumed = await keeper.resume(session.id)  # the reconnect, by session id
        workflow = record_workflow(agents_on(server), resumed, run_config=RunConfig(**OFFLINE))
        line = Line(workflow)
        await line.open()
        await line.say("Is it refundable?")
        workflow.finish_open()  # the reply played out
        await line.hang_up()

        c1 = resumed.state.calls["c1"]
        print(f"{c1.name} {c1.status} {c1.result}, tables booked: {tables}")
        print(f"agent {workflow.agent.name}, epoch {resumed.state.epoch}")
        seeded = [m["role"] for m in server.requests[-1]["messages"]]
        print(f"the resumed agent's model got {len(seeded)} messages: {' '.join(seeded)}")
        for item in resumed.state.items:
            if item.kind == "user":
                print(f"user: {item.text}")
            elif item.kind == "assistant" and item.interrupted:
                print(f"assistant (cut, heard): {item.spoken} [kept aside: {item.unspoken}]")
            elif item.kind == "assistant":
                print(f"assistant: {item.text}")


if __name__ == "__main__":
    asyncio.run(main())
