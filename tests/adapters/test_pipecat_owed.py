"""Outcomes owed to the model reach a Pipecat pipeline whenever they land; a fenced one stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pipecat.frames.frames import Frame, StartFrame, TTSTextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from callstate import Keeper, Session, StaleEpochError
from callstate.adapters.pipecat import seed_context
from callstate.testing import FakeClock

from .test_pipecat_harness import Bot, Reply
from .test_pipecat_tools import BOOKING, Tools

SECRET = b"pipecat-adapter-test-secret-0001"
SYSTEM = "You book tables."


class SlowConnect(FrameProcessor):
    """Holds the StartFrame until ``go`` is set, as a real STT service connecting would."""

    def __init__(self) -> None:
        super().__init__()
        self.connecting = asyncio.Event()
        self.go = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.connecting.set()
            await self.go.wait()
        await self.push_frame(frame, direction)


def spoken(bot: Bot) -> str:
    """What the output played, as text."""
    return " ".join(f.text for f in bot.released(TTSTextFrame))  # type: ignore[attr-defined]


def landed_notes(messages: list[Any], call_id: str) -> list[str]:
    return [
        m["content"]
        for m in messages
        if m["role"] == "system"
        and f"call {call_id}" in m["content"]
        and "finished" in m["content"]
    ]


@asynccontextmanager
async def resumed(tmp_path: Path, tools: Tools) -> AsyncIterator[tuple[Keeper, Session]]:
    """A call whose write was cut off by a crash, resumed in a second keeper: the resume
    re-runs the write (attempt 2), which waits for ``tools.release``."""
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    first = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await first.open()
    s = await first.start(caller="+15551234567", agent="booker")
    reply = Reply("Sure. Moving it now.", calls=[("c1", "move_booking", BOOKING)])
    async with Bot(s, [reply]) as bot:
        await bot.user.say("move my booking to eight")
        await bot.until(lambda: tools.ran == ["move_booking"])
        await s.flush()
        await bot.crash()
    clock.advance(20)
    second = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    await second.open()
    s2 = await second.resume(s.id)
    await first.close()
    try:
        yield second, s2
    finally:
        tools.release["move_booking"].set()
        await second.close()


async def _check_given(keeper: Keeper, s2: Session) -> None:
    """The note is recorded as given, durably: a later owner does not owe it again."""
    assert [] == s2.owed_to_model()
    await s2.flush()
    assert [] == (await keeper.load(s2.id)).owed_to_model


async def test_a_rerun_that_ended_before_the_pipeline_existed_reaches_the_model(
    tmp_path: Path,
) -> None:
    """A re-run finishing before the new pipeline starts is written into its context."""
    tools = Tools()
    async with resumed(tmp_path, tools) as (keeper, s2):
        assert s2.recovery is not None
        assert ["c1"] == s2.recovery.running
        context = seed_context(None, s2, system=SYSTEM)  # the plan: c1 still running
        tools.release["move_booking"].set()
        await s2.run_tool("move_booking", BOOKING, call_id="c1")  # awaits the re-run
        async with Bot(s2, [Reply("It is done: eight o'clock.")], context=context) as bot:
            await bot.until(lambda: len(bot.llm.seen) == 1)
        notes = landed_notes(bot.llm.seen[0], "c1")
        assert 1 == len(notes)
        assert '"moved":true' in notes[0]
        await _check_given(keeper, s2)


async def test_a_rerun_that_ends_while_the_pipeline_starts_reaches_the_model(
    tmp_path: Path,
) -> None:
    """A re-run finishing while the StartFrame is still on its way (an STT connecting)
    is written into the context once the pipeline is up."""
    tools = Tools()
    async with resumed(tmp_path, tools) as (keeper, s2):
        context = seed_context(None, s2, system=SYSTEM)
        stt = SlowConnect()
        bot = Bot(s2, [Reply("It is done: eight o'clock.")], context=context, stt=stt)
        entering = asyncio.ensure_future(bot.__aenter__())
        await asyncio.wait_for(stt.connecting.wait(), timeout=10)
        tools.release["move_booking"].set()
        await s2.run_tool("move_booking", BOOKING, call_id="c1")  # lands mid-start
        stt.go.set()
        async with await entering:
            await bot.until(lambda: len(bot.llm.seen) == 1)
        notes = landed_notes(bot.llm.seen[0], "c1")
        assert 1 == len(notes)
        assert '"moved":true' in notes[0]
        await _check_given(keeper, s2)


async def test_a_rerun_that_ends_on_a_quiet_line_reaches_the_model(tmp_path: Path) -> None:
    """A re-run finishing after the pipeline started, with nobody talking, is written
    into the context and the model runs on it, once."""
    tools = Tools()
    async with resumed(tmp_path, tools) as (keeper, s2):
        context = seed_context(None, s2, system=SYSTEM)
        async with Bot(s2, [Reply("It is done: eight o'clock.")], context=context) as bot:
            tools.release["move_booking"].set()
            await bot.until(lambda: len(bot.llm.seen) == 1)
            await bot.until(lambda: spoken(bot) == "It is done: eight o'clock.")
        assert 1 == len(landed_notes(bot.llm.seen[0], "c1"))
        assert 1 == len(landed_notes(bot.context.messages, "c1"))
        await _check_given(keeper, s2)


async def test_a_result_the_pipeline_gave_is_not_owed_after_a_resume(tmp_path: Path) -> None:
    """A result delivered through the function handler is recorded as given: a session
    resumed in another keeper owes the model nothing."""
    tools = Tools()
    tools.release["check_availability"].set()
    url = f"sqlite:///{tmp_path}/calls.db"
    async with Keeper(url, tools=tools.registry, secret=SECRET, clock=FakeClock()) as a:
        s = await a.start(agent="booker")
        replies = [
            Reply("Let me check.", calls=[("c1", "check_availability", {"time": "20:00"})]),
            Reply("Eight is free."),
        ]
        async with Bot(s, replies) as bot:
            await bot.user.say("is eight free?")
            await bot.until(lambda: len(bot.llm.seen) == 2)
        await s.flush()
        token = s.resume_token()
    async with Keeper(url, tools=tools.registry, secret=SECRET, clock=FakeClock()) as b:
        s2 = await b.resume(token)
        assert [] == s2.owed_to_model()
        assert s2.recovery is not None
        assert [] == s2.recovery.owed_to_model


async def test_a_fenced_pipeline_passes_frames_through_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a second keeper takes the call over, the old pipeline records nothing, keeps
    every frame flowing (the reply still plays), logs once and emits one session.fenced."""
    errors: list[str] = []
    sink = logger.add(lambda m: errors.append(str(m)), level="ERROR")
    url = f"sqlite:///{tmp_path}/calls.db"
    try:
        async with (
            Keeper(url, secret=SECRET, clock=FakeClock()) as a,
            Keeper(url, secret=SECRET, clock=FakeClock()) as b,
        ):
            s = await a.start(agent="booker")
            replies = [Reply("Hello there."), Reply("Still here, still talking.")]
            async with Bot(s, replies) as bot:
                await bot.user.say("hello")
                await bot.until(lambda: spoken(bot) == "Hello there.")
                await s.flush()
                await b.resume(s.id)  # another worker takes the call

                async def write_and_flush() -> None:
                    s.user_partial("are you")  # raises at once if its flusher already saw it
                    await s.flush()  # or here: either way the old owner learns it was fenced

                with pytest.raises(StaleEpochError):
                    await write_and_flush()
                seq = s.state.seq
                with caplog.at_level(logging.WARNING, logger="callstate.adapters.pipecat"):
                    await bot.user.say("are you there?")
                    await bot.until(lambda: spoken(bot).endswith("still talking."))
                assert seq == s.state.seq
            assert "Hello there. Still here, still talking." == spoken(bot)
            fenced = [r for r in caplog.records if "fenced" in r.getMessage()]
            assert 1 == len(fenced)
            assert 1 == a.observer.counts["session.fenced"]
            assert s.fenced
    finally:
        logger.remove(sink)
    # Pipecat logs every exception a handler or processor raises; none may come from us
    assert [] == [e for e in errors if "StaleEpochError" in e or "uncaught exception" in e]
