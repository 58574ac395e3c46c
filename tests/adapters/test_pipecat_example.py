"""examples/pipecat_bot.py builds a pipeline that works: run offline with scripted services."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pipecat.frames.frames import EndFrame, Frame, LLMFullResponseEndFrame
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_start import ExternalUserTurnStartStrategy
from pipecat.turns.user_stop import ExternalUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils import deprecation
from pipecat.workers.runner import WorkerRunner

from callstate import Keeper
from callstate.errors import ConfigError
from callstate.testing import FakeClock

from .test_pipecat_harness import PacedOutput, Playback, Reply, ScriptedLLM, ToneTTS, UserSource

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipecat_bot.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pipecat_bot_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class OfflineTransport(BaseTransport):
    """A transport whose input is a scripted caller and whose output is the paced speaker."""

    def __init__(self) -> None:
        super().__init__()
        self.caller = UserSource()
        self.speaker = PacedOutput(Playback())

    def input(self) -> FrameProcessor:
        return self.caller

    def output(self) -> FrameProcessor:
        return self.speaker


class Passthrough(FrameProcessor):
    """Stands in for speech recognition: the scripted caller already sends transcripts."""

    async def process_frame(self, frame: Any, direction: Any) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


async def test_example_bot_moves_a_booking_through_the_guard() -> None:
    """The example's pipeline runs the model's tool call through the guard and speaks on."""
    example = load_example()
    transport = OfflineTransport()
    llm = ScriptedLLM(
        [
            Reply(
                "One moment.", calls=[("c1", "move_booking", {"booking_id": "B1", "time": "20:00"})]
            ),
            Reply("Done: eight o'clock."),
        ]
    )
    turns = LLMUserAggregatorParams(
        user_turn_strategies=UserTurnStrategies(
            start=[ExternalUserTurnStartStrategy()],
            stop=[ExternalUserTurnStopStrategy(timeout=0.0)],
        )
    )
    async with Keeper(
        "memory://",
        secret=b"pipecat-example-secret-32-bytes!",
        tools=example.tools,
        clock=FakeClock(),
    ) as keeper:
        session = await keeper.start(caller="+15551234567", agent="bookings")
        worker, recovery = example.build_bot(
            session, transport, stt=Passthrough(), llm=llm, tts=ToneTTS(), user_params=turns
        )
        played_out = asyncio.Event()  # both replies played: the second response ended

        def count(_output: object, frame: Frame) -> None:
            if isinstance(frame, LLMFullResponseEndFrame) and len(llm.seen) == 2:
                played_out.set()

        transport.speaker.add_event_handler("on_after_push_frame", count)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        run = asyncio.create_task(runner.run())
        await transport.caller.say("move my booking to eight")
        async with asyncio.timeout(10):
            await played_out.wait()
        await worker.queue_frame(EndFrame())
        await run
    assert llm is recovery.processor.previous  # the callstate processor is right after the LLM
    assert "20:00" == example.BOOKINGS["B1"]["time"]
    assert "succeeded" == session.state.calls["c1"].status
    seen = llm.seen[1]
    assert ["user", "assistant"] == [m["role"] for m in seen[:2]]  # the prompt is on the LLM
    tool = [m for m in seen if m.get("tool_call_id") == "c1"]
    assert [json.dumps({"booking_id": "B1", "time": "20:00", "people": 2})] == [
        m["content"] for m in tool
    ]
    assert "Done: eight o'clock." == session.context()[-1]["content"]


def test_readme_pipecat_example_defines_the_bot() -> None:
    """The README's Pipecat block runs as written: its imports resolve and it defines run_bot."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Pipecat", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {"__name__": "readme_pipecat"}
    exec(compile(code, "README.md#pipecat", "exec"), namespace)
    assert {"move_booking"} == set(namespace["tools"].names())
    assert ["move_booking"] == [t.name for t in namespace["SCHEMA"].standard_tools]
    assert asyncio.iscoroutinefunction(namespace["run_bot"])


async def test_example_default_services_use_no_deprecated_arguments(
    monkeypatch: Any,
) -> None:
    """The example's default STT, LLM and TTS are built with Pipecat 1.14's settings API."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    example = load_example()
    async with Keeper("memory://", tools=example.tools, clock=FakeClock()) as keeper:
        session = await keeper.start(agent="bookings")
        deprecation._warned_sites.clear()  # Pipecat warns once per call site per process
        with warnings.catch_warnings(record=True) as seen:
            _worker, _recovery = example.build_bot(session, OfflineTransport())
    assert [] == [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning)]
    assert {"move_booking", "check_availability"} <= set(example.tools.names())


async def test_readme_pipecat_keeper_needs_the_secret_it_says() -> None:
    """As the Pipecat section says: a caller id needs a keeper secret, which also signs the token."""
    example = load_example()
    async with Keeper("memory://", tools=example.tools, clock=FakeClock()) as plain:
        with pytest.raises(ConfigError):
            await plain.start(caller="+15551234567")
    secret = b"pipecat-example-secret-32-bytes!"
    async with Keeper("memory://", secret=secret, tools=example.tools, clock=FakeClock()) as k:
        session = await k.start(caller="+15551234567")
        token = session.resume_token()
        await session.close()
        assert session.id == (await k.resume(token)).id


async def test_the_default_llm_takes_the_prompt_and_no_context_system_message(
    monkeypatch: Any,
) -> None:
    """The default OpenAI LLM has the prompt as its system instruction, and the contexts the
    example builds (a new call, one handed over before anything was said) reach its
    adapter with no system message first, which Pipecat deprecates (conftest fails on it)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    example = load_example()
    async with Keeper("memory://", secret=b"pipecat-example-secret-32-bytes!",
                      tools=example.tools, clock=FakeClock()) as keeper:  # fmt: skip
        fresh = await keeper.start(caller="+15551234567", agent="bookings")
        early = await keeper.start(caller="+15557654321", agent="front")
        handed = await keeper.accept((await early.handoff(to="bookings")).to_bytes())
        firsts = []
        for session in (fresh, handed):
            _worker, recovery = example.build_bot(session, OfflineTransport())
            llm = recovery.llm
            context = llm.previous.context  # the user aggregator's
            params = await llm.get_llm_adapter().get_llm_invocation_params(
                context, convert_developer_to_user=False
            )
            firsts.append([m["role"] for m in params["messages"]][:1])
    assert example.SYSTEM == llm.settings.system_instruction
    assert [[], ["developer"]] == firsts
