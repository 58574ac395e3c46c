"""Hold is enforced: a resumed session waits for its link, held speech is never heard,
and the journaled outbox delivers on whichever worker resumes the call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import callstate
from callstate.continuity.link import HeldSpeech
from callstate.journal import events as ev
from callstate.journal.state import fold
from callstate.testing import FakeClock


@dataclass
class Workers:
    a: callstate.Keeper
    b: callstate.Keeper
    clock: FakeClock


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Workers]:
    """Two keepers (two workers) sharing one SQLite file and one clock."""
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/cs.db"
    async with (
        callstate.Keeper(url, clock=clock, outbox_limit=4) as a,
        callstate.Keeper(url, clock=clock, outbox_limit=4) as b,
    ):
        yield Workers(a, b, clock)


async def _journal(k: callstate.Keeper, sid: str) -> list[ev.Event]:
    return [ev.decode_event(raw) for raw in await k.store.read_events(sid)]


async def test_a_resumed_session_starts_on_hold_until_the_link_opens(workers: Workers) -> None:
    """After resume the session is on hold and messages queue; connection_restored takes
    it off hold and sends them."""
    s = await workers.a.start()
    s.user_said("hello")
    await s.flush()
    s2 = await workers.b.resume(s.id)
    sent: list[Any] = []
    s2.outbox.connect(sent.append)
    assert (True, False) == (s2.on_hold, s2.outbox.send({"type": "caption"}))
    assert [] == sent
    s2.connection_restored()
    assert (False, [{"type": "caption"}]) == (s2.on_hold, sent)
    await s2.flush()
    assert not (await workers.b.load(s.id)).on_hold


async def test_speech_on_hold_is_held_never_heard(workers: Workers) -> None:
    """agent_started on hold goes to held_speech, not the conversation; progress and
    finish reports while held count nothing as heard, and the resume note does not claim
    the drop cut it."""
    s = await workers.a.start()
    s.user_said("is my booking moved?")
    s.connection_lost("network switch")
    uid = s.agent_started("Yes, it is")
    s.agent_progress(uid, spoken_text="Yes,", text="Yes, it is at eight")
    s.agent_finished(uid)
    assert [HeldSpeech(utterance_id=uid, text="Yes, it is at eight")] == s.held_speech
    assert ["user"] == [i.kind for i in s.state.items]
    assert [{"role": "user", "content": "is my booking moved?"}] == s.context()
    await s.flush()
    s2 = await workers.b.resume(s.id)
    assert s2.recovery is not None
    assert "while you were saying" not in s2.recovery.resume_note
    assert [HeldSpeech(utterance_id=uid, text="Yes, it is at eight")] == s2.held_speech
    assert ["Yes, it is at eight"] == s2.recovery.held_speech
    assert (
        "The caller has not heard what you said while the line was down: “Yes, it is at eight”."
        in s2.recovery.resume_note
    )


async def test_held_speech_and_messages_go_out_in_order_on_restore(workers: Workers) -> None:
    """connection_restored sends messages and held speech in the order recorded; held
    speech enters the conversation as it goes out, unheard until progress says so."""
    s = await workers.a.start()
    sent: list[Any] = []
    s.outbox.connect(sent.append)
    s.connection_lost()
    s.outbox.send("m1")
    uid = s.agent_started("One moment")
    s.outbox.send("m2")
    s.connection_restored()
    assert ["m1", HeldSpeech(utterance_id=uid, text="One moment"), "m2"] == sent
    assert ([], 0) == (s.held_speech, len(s.state.outbox))
    item = s.state.items[-1]
    assert ("assistant", uid, "One moment", "", False) == (
        item.kind,
        item.id,
        item.text,
        item.spoken,
        item.done,
    )
    s.agent_progress(uid, spoken_text="One")  # now it plays: progress counts again
    assert "One" == s.state.items[-1].spoken


async def test_a_resume_on_another_worker_delivers_what_was_held(workers: Workers) -> None:
    """Messages and speech held on worker a are journaled; worker b resumes and delivers
    them in order, once; a later resume has nothing left to send."""
    s = await workers.a.start()
    s.connection_lost("worker a's socket closed")
    s.outbox.send({"type": "transcript", "text": "hi"})
    uid = s.agent_started("Welcome back")
    await s.flush()
    s2 = await workers.b.resume(s.id)
    sent: list[Any] = []
    s2.outbox.connect(sent.append)
    s2.connection_restored()
    assert [
        {"type": "transcript", "text": "hi"},
        HeldSpeech(utterance_id=uid, text="Welcome back"),
    ] == sent
    await s2.flush()
    tags = [type(e).__struct_config__.tag for e in await _journal(workers.b, s.id)]
    assert 2 == tags.count("link.outbox_queued")
    resumed = tags.index("session.resumed")
    assert ["link.outbox_sent", "agent.started", "link.restored"] == tags[resumed + 1 :]
    s2.connection_lost()
    await s2.flush()
    s3 = await workers.a.resume(s.id)
    assert ([], []) == (s3.outbox.queued, s3.state.outbox)


async def test_messages_kept_in_process_are_not_journaled(workers: Workers) -> None:
    """send(durable=False) waits in this process only: it keeps its place in the order
    here, and another worker never sees it."""
    s = await workers.a.start()
    s.connection_lost()
    s.outbox.send("kept", durable=True)
    s.outbox.send(b"audio", durable=False)
    assert ["kept", b"audio"] == s.outbox.queued
    await s.flush()
    s2 = await workers.b.resume(s.id)
    assert ["kept"] == s2.outbox.queued


async def test_a_full_outbox_drops_alike_in_memory_and_in_the_journal(workers: Workers) -> None:
    """Past the limit the oldest entries go, and another worker restores the same queue;
    in-process audio never pushes a journaled entry out."""
    s = await workers.a.start()
    s.connection_lost()
    for m in range(6):
        s.outbox.send(m)
    s.outbox.send("audio", durable=False)  # the queue holds only journaled entries
    assert [2, 3, 4, 5] == s.outbox.queued
    assert [2, 3, 4, 5] == [h.message for h in s.state.outbox]
    await s.flush()
    s2 = await workers.b.resume(s.id)
    assert [2, 3, 4, 5] == s2.outbox.queued


async def test_a_message_json_cannot_carry_is_refused(workers: Workers) -> None:
    """A durable message that is not JSON raises CodecError naming the field; nothing is
    queued or recorded."""
    s = await workers.a.start()
    s.connection_lost()
    seq = s.state.seq
    with pytest.raises(callstate.CodecError, match=r"\$\.message"):
        s.outbox.send(object())
    assert ([], seq) == (s.outbox.queued, s.state.seq)


async def test_a_failing_sink_keeps_held_speech_unstarted(workers: Workers) -> None:
    """When the transport fails on held speech it stays held and is not started; the
    retry sends it once."""
    s = await workers.a.start()
    calls: list[Any] = []

    def flaky(m: Any) -> None:
        calls.append(m)
        if len(calls) == 1:
            raise ConnectionError("closed again")

    s.outbox.connect(flaky)
    s.connection_lost()
    uid = s.agent_started("Sorry about that")
    with pytest.raises(ConnectionError):
        s.connection_restored()
    assert (True, 1, []) == (
        s.on_hold,
        len(s.held_speech),
        [i.id for i in s.state.items if i.kind == "assistant"],
    )
    s.connection_restored()
    assert [uid] == [i.id for i in s.state.items if i.kind == "assistant"]
    assert 2 == len(calls)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 99), st.booleans()),
        st.tuples(st.just("speak"), st.sampled_from(["u1", "u2", "u3"]), st.text(max_size=5)),
        st.tuples(st.just("restore"), st.none(), st.none()),
        st.tuples(st.just("lose"), st.none(), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=_ops)
def test_the_journal_folds_to_the_outbox_held_in_memory(ops: list[tuple[str, Any, Any]]) -> None:
    """Whatever is sent, held, dropped or flushed, a fold of the journal holds exactly the
    journaled entries the in-memory outbox holds, in order."""

    async def run() -> None:
        async with callstate.Keeper("memory://", outbox_limit=3) as k:
            s = await k.start()
            sent: list[Any] = []
            s.outbox.connect(sent.append)
            for op, a, b in ops:
                if op == "send":  # kept in process: a str; journaled: an int
                    s.outbox.send(a if b else f"v{a}", durable=b)
                elif op == "speak":
                    if s.on_hold:
                        s.outbox.hold_speech(a, b)
                elif op == "restore":
                    s.connection_restored()
                else:
                    s.connection_lost()
            await s.flush()
            journal = await _journal(k, s.id)
            folded = fold(journal).outbox
            durable = [
                HeldSpeech(utterance_id=h.utterance_id, text=h.text)
                if h.utterance_id is not None
                else h.message
                for h in folded
            ]
            assert [p for p in s.outbox.queued if not isinstance(p, str)] == durable
            assert durable == (await k.resume(s.id)).outbox.queued

    asyncio.run(run())
