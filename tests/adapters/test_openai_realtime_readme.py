"""The README's OpenAI Realtime section: its example does what the text says it does."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import ResumedEvent

from .readme_blocks import Seen, load, section_code
from .test_openai_realtime import outputs, until

TITLE = "OpenAI Realtime"


def is_resumed(event: object) -> bool:
    return isinstance(event, ResumedEvent)


async def test_the_drop_is_replayed_and_each_call_answered_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The line drops while the tool runs: a new Realtime session gets the conversation
    in order, the call's output exactly once, the write ran once, and the context keeps
    the caller's turn, the call, its result and the answer in that order."""
    seen = Seen()
    ns = load(section_code(TITLE), seen)
    await ns["main"]()
    out = capsys.readouterr().out.splitlines()
    (server,) = seen.servers
    (session,) = seen.sessions
    first, second = server.sessions
    (call,) = session.state.calls.values()
    assert "resumed (drop): 4 items replayed" == out[0]
    assert [] == outputs(first.received, call.wire_id or call.call_id)
    assert 1 == len(outputs(second.received, call.wire_id or call.call_id))
    replayed = [e["item"] for e in second.received if e["type"] == "conversation.item.create"]
    assert ["message", "function_call", "function_call_output", "message"] == [
        i["type"] for i in replayed
    ]
    assert ("user", "system") == (replayed[0]["role"], replayed[-1]["role"])
    assert ("succeeded", 1) == (call.status, call.attempts)
    assert ["user", "assistant", "tool", "assistant"] == [m["role"] for m in session.context()]
    assert [] == server.malformed


async def test_caller_turns_need_input_transcription(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As the text says, without ``audio.input.transcription`` no caller turn is recorded;
    the call and the answer still are."""
    seen = Seen()
    ns = load(section_code(TITLE), seen)
    ns["CONFIG"]["audio"] = {"input": {}}
    await ns["main"]()
    capsys.readouterr()
    (session,) = seen.sessions
    assert ["assistant", "tool", "assistant"] == [m["role"] for m in session.context()]


async def test_without_the_secret_the_caller_id_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The secret the example passes is what lets it record the caller's number: without
    it ``keeper.start(caller=...)`` raises ConfigError naming ``secret``."""
    code = section_code(TITLE)
    ns = load(code.replace("secret=SECRET, ", ""), Seen())
    assert "secret=SECRET, " in code
    with pytest.raises(callstate.ConfigError, match="secret"):
        await ns["main"]()


@pytest.mark.parametrize("secret", [True, False])
async def test_handoff_switches_the_agent_and_needs_the_secret(secret: bool) -> None:
    """``conn.handoff`` moves the call to the new agent (epoch+1) and sends its
    instructions; without a secret it raises ConfigError and the call stays as it was."""
    ns = load(section_code(TITLE), Seen())
    billing = {"instructions": "You are billing."}
    options = {"secret": ns["SECRET"]} if secret else {"plaintext_callers": True}
    async with (
        ns["RealtimeServer"](session={"audio": ns["CONFIG"]["audio"]}) as server,
        callstate.Keeper("memory://", tools=ns["tools"], **options) as keeper,
        AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url) as client,
    ):
        session = await keeper.start(caller="+15551234567", agent="booking")
        async with ns["connect"](
            client, session, model="gpt-realtime", config=ns["CONFIG"]
        ) as conn:
            if not secret:
                with pytest.raises(callstate.ConfigError, match="secret"):
                    await conn.handoff(to="billing", config=billing)
                assert (session, "booking", True) == (
                    conn.callstate,
                    session.state.agent,
                    session.writable,
                )
                return
            accepted = await conn.handoff(to="billing", config=billing)
            assert "handoff" == (await until(conn, is_resumed))[-1].reason
            await server.wait_for(
                lambda: any(
                    e["type"] == "session.update"
                    and e["session"].get("instructions") == billing["instructions"]
                    for e in server.current.received
                )
            )
    assert ("billing", 2) == (accepted.state.agent, accepted.state.epoch)
    assert accepted is conn.callstate
