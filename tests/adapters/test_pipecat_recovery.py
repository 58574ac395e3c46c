"""A new Pipecat pipeline continues a call: after a crash, or after a handoff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipecat.frames.frames import LLMRunFrame, TTSTextFrame

from callstate import HandoffPackage, Keeper, RecoveryPlan
from callstate.adapters.pipecat import context_messages, seed_context
from callstate.testing import FakeClock

from .test_pipecat_harness import Bot, Reply
from .test_pipecat_tools import BOOKING, Tools, tool_messages

SECRET = b"pipecat-adapter-test-secret-0001"
SYSTEM = "You book tables."


def system_notes(messages: list[Any]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "system" and m["content"] != SYSTEM]


async def test_crash_and_resume_continues_in_a_new_pipeline(tmp_path: Path) -> None:
    """A resumed session seeds a new pipeline's context; the re-run call lands in it."""
    tools = Tools()
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    first = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await first.open()
    s = await first.start(caller="+15551234567", agent="booker")
    reply = Reply(
        "Sure. Let me move that booking for you.", calls=[("c1", "move_booking", BOOKING)]
    )
    async with Bot(s, [reply]) as bot:
        bot.playback.pause_after(1)  # the line goes dead after "Sure."
        await bot.user.say("move my booking to eight")
        await bot.until(lambda: tools.ran == ["move_booking"] and bot.playback.texts_released == 1)
        await s.flush()
        await bot.crash()

    clock.advance(20)
    second = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await second.open()
    s2 = await second.resume(s.id)  # the first process is fenced from here on
    await first.close()  # what is left of the dead process lets go of its run
    assert isinstance(s2.recovery, RecoveryPlan)
    messages = seed_context(None, s2, system=SYSTEM).messages
    assert s2.recovery.context(system=SYSTEM) == messages
    replies = [Reply("As I was saying, I am moving it now."), Reply("It is done: eight o'clock.")]
    async with Bot(s2, replies, context=seed_context(None, s2, system=SYSTEM)) as bot2:
        await bot2.worker.queue_frame(LLMRunFrame())  # the caller is back on the line
        await bot2.until(lambda: len(bot2.llm.seen) == 1)
        tools.release["move_booking"].set()  # the re-run (same idempotency key) finishes
        await bot2.until(lambda: len(bot2.llm.seen) == 2)
        await bot2.until(lambda: len(bot2.released(TTSTextFrame)) == 2)
    await second.close()

    resumed = bot2.llm.seen[0]
    assert {"role": "system", "content": SYSTEM} == resumed[0]
    assert {"role": "user", "content": "move my booking to eight"} in resumed
    assert {"role": "assistant", "content": "Sure."} in resumed
    note = resumed[-1]
    assert "system" == note["role"]
    assert s2.recovery.resume_note == note["content"]
    assert "Let me move that booking for you" in note["content"]  # the unspoken rest
    call = s2.state.calls["c1"]
    assert ("succeeded", 2) == (call.status, call.attempts)  # re-run once, here
    landed = [n for n in system_notes(bot2.llm.seen[1]) if "call c1" in n]
    assert 1 == len(landed)
    assert '"moved":true' in landed[0]
    assert "It is done: eight o'clock." == s2.context()[-1]["content"]


async def test_handoff_to_a_second_pipeline_carries_the_call_and_its_running_tool() -> None:
    """An accepted handoff seeds the second pipeline; a call still running lands there."""
    tools = Tools()
    async with Keeper(
        "memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()
    ) as keeper:
        s = await keeper.start(agent="triage")
        reply = Reply("Moving it now.", calls=[("c1", "move_booking", BOOKING)])
        async with Bot(s, [reply]) as bot:
            await bot.user.say("move my booking to eight, and I have a billing question")
            await bot.until(lambda: tools.ran == ["move_booking"])
            pkg = await s.handoff(to="billing", reason="billing question")
        s_b = await keeper.accept(pkg.to_bytes())  # as another process would receive it
        assert "billing" == s_b.state.agent
        context = seed_context(None, pkg, system="You handle billing.")
        replies = [Reply("Hi, billing here. What is the question?"), Reply("Your balance is zero.")]
        async with Bot(s_b, replies, context=context) as bot_b:
            await bot_b.worker.queue_frame(LLMRunFrame())
            await bot_b.until(lambda: len(bot_b.llm.seen) == 1)
            tools.release["move_booking"].set()  # finishes in the source, lands here
            await bot_b.until(lambda: s_b.state.calls["c1"].terminal)
            await bot_b.until(
                lambda: any("call c1" in n for n in system_notes(bot_b.context.messages))
            )
            await bot_b.user.say("what is my balance?")
            await bot_b.until(lambda: len(bot_b.llm.seen) == 2)

    first = bot_b.llm.seen[0]
    assert {"role": "system", "content": "You handle billing."} == first[0]
    assert {
        "role": "user",
        "content": "move my booking to eight, and I have a billing question",
    } in first
    assert "handed over" in first[-1]["content"]
    assert ["move_booking"] == tools.ran  # ran once, in the source
    assert ("succeeded", "announced") == (
        s_b.state.calls["c1"].status,
        s_b.state.calls["c1"].delivery,
    )
    later = bot_b.llm.seen[1]
    assert any("Tell them now what was done" in n for n in system_notes(later))
    assert 1 == len(tool_messages(later, "c1"))


async def test_a_package_from_any_framework_seeds_a_pipecat_context() -> None:
    """A package recorded without Pipecat converts to the messages a Pipecat LLM is given."""
    async with Keeper("memory://", secret=SECRET, clock=FakeClock()) as keeper:
        s = await keeper.start(agent="frontdesk")
        s.user_said("I'd like a table tonight")
        u = s.agent_started("For how many people? And what time works?")
        s.agent_progress(u, spoken_text="For how many people?")
        s.interrupt(heard_text="For how many people?")
        s.user_partial("four at")
        pkg = await s.handoff(to="booker", reason="booking")
        raw = pkg.to_bytes()
        s_b = await keeper.accept(raw)
        context = seed_context(None, HandoffPackage.from_bytes(raw, secret=SECRET), system=SYSTEM)
        async with Bot(s_b, [Reply("Four people, at what time?")], context=context) as bot:
            await bot.worker.queue_frame(LLMRunFrame())
            await bot.until(lambda: len(bot.llm.seen) == 1)
    seen = bot.llm.seen[0]
    assert [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "I'd like a table tonight"},
        {"role": "assistant", "content": "For how many people?"},
    ] == seen[:3]
    note = seen[3]["content"]
    assert "four at" in note  # what the caller had started to say
    assert "And what time works?" in note  # what they never heard
    assert context_messages(pkg, system=SYSTEM) == seen


async def test_a_call_finished_by_another_process_lands_in_the_new_pipeline(
    tmp_path: Path,
) -> None:
    """A call still running in the handoff's source process lands in the target pipeline."""
    tools = Tools()
    url = f"sqlite:///{tmp_path}/calls.db"
    source = Keeper(url, tools=tools.registry, secret=SECRET, clock=FakeClock())
    target = Keeper(url, tools=tools.registry, secret=SECRET, clock=FakeClock())
    async with source, target:
        s = await source.start(agent="triage")
        reply = Reply("Moving it now.", calls=[("c1", "move_booking", BOOKING)])
        async with Bot(s, [reply]) as bot:
            await bot.user.say("move my booking to eight, then billing please")
            await bot.until(lambda: tools.ran == ["move_booking"])
            pkg = await s.handoff(to="billing", reason="billing question")
        s_b = await target.accept(pkg.to_bytes())
        replies = [Reply("Billing here."), Reply("Your booking is at eight now.")]
        async with Bot(s_b, replies, context=seed_context(None, s_b)) as bot_b:
            await bot_b.worker.queue_frame(LLMRunFrame())
            await bot_b.until(lambda: len(bot_b.llm.seen) == 1)
            tools.release["move_booking"].set()  # finishes in the source process
            await bot_b.until(
                lambda: any("call c1" in n for n in system_notes(bot_b.context.messages))
            )
            await bot_b.user.say("did the booking go through?")
            await bot_b.until(lambda: len(bot_b.llm.seen) == 2)
    assert ["move_booking"] == tools.ran
    call = s_b.state.calls["c1"]
    assert ("succeeded", "announced") == (call.status, call.delivery)
    notes = system_notes(bot_b.llm.seen[1])
    assert any('"moved":true' in n and "has finished" in n for n in notes)
    assert any("Tell them now what was done" in n for n in notes)


async def test_speech_held_before_a_crash_is_said_once_the_new_pipeline_is_up(
    tmp_path: Path,
) -> None:
    """Speech held while the line was down is voiced once by the resumed pipeline."""
    tools = Tools()
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    first = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await first.open()
    s = await first.start(caller="+15551234567", agent="booker")
    s.user_said("is my table booked?")
    s.connection_lost("network switch")
    held = s.agent_started("Yes, your table for two is booked at eight.")
    await s.flush()
    await first.close()

    second = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await second.open()
    s2 = await second.resume(s.id)
    replies = [Reply("Yes, your table for two is booked at eight.")]
    async with Bot(s2, replies, context=seed_context(None, s2, system=SYSTEM)) as bot:
        await bot.until(lambda: len(bot.released(TTSTextFrame)) >= 1)
        await bot.until(lambda: s2.state.items[-1].done)
    await second.close()

    assert 1 == len(bot.llm.seen)
    asked = system_notes(bot.llm.seen[0])[-1]
    assert "Yes, your table for two is booked at eight." in asked
    assert [] == s2.held_speech
    assert [] == list(s2.state.outbox)
    spoken = {i.id: i.spoken for i in s2.state.items if i.kind == "assistant"}
    assert "" == spoken[held]  # never heard where it was first said
    assert "Yes, your table for two is booked at eight." == s2.context()[-1]["content"]
