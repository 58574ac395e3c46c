"""Write the golden files of the stored formats (run once; it never overwrites).

``events_v1.jsonl`` holds one encoded event per v1 event type, every field set to a
value other than its default; ``snapshot_v1.json`` (JSON, format 1) and
``snapshot_v2.msgpack`` (format 2) hold the snapshot of a realistic session. Once
written they are frozen: ``tests/test_events.py`` checks that they keep
decoding to exactly :func:`golden_events` and :func:`golden_state`. A format change
that breaks them needs a new format version and new golden files, never an edit.

    python tests/golden/make_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from callstate.journal import events as ev
from callstate.journal.snapshot import encode_snapshot, encode_state
from callstate.journal.state import Item, SessionState, ToolCall

HERE = Path(__file__).parent
EVENTS_FILE = HERE / "events_v1.jsonl"
SNAPSHOT_FILE = HERE / "snapshot_v1.json"
SNAPSHOT_V2_FILE = HERE / "snapshot_v2.msgpack"
ADDED_FILE = HERE / "events_v1_added.jsonl"
CONTEXT_DELIVERED_FILE = HERE / "events_v1_context_delivered.jsonl"
#: v1 events added after events_v1.jsonl was frozen: the journaled outbox, resume channel
OUTBOX_FILE = HERE / "events_v1_outbox.jsonl"
#: v1 events' fields added after that: why an owner lost a session, why nobody resumed it
CAUSES_FILE = HERE / "events_v1_causes.jsonl"

T = 1_717_171_717.25  # every timestamp below is T + a few seconds


def golden_events() -> list[ev.Event]:
    """One event of every v1 type, each field away from its default."""
    return [
        ev.SessionStarted(
            seq=1,
            at=T,
            session_id="sess-golden",
            agent="triage",
            caller="+15551234567",
            epoch=3,
            userdata={"booking": "B1", "party": 4},
            metadata={"channel": "pstn", "region": "eu"},
        ),
        ev.SessionResumed(seq=2, at=T + 1, epoch=4, gap_s=12.5, via="takeover", owner="worker-7"),
        ev.SessionEnded(seq=3, at=T + 2, reason="caller_hangup"),
        ev.SessionExpiredEvent(seq=4, at=T + 3, reason="resume window of 600s passed"),
        ev.UserPartial(seq=5, at=T + 4, text="I'd like to"),
        ev.UserTurn(seq=6, at=T + 5, text="I'd like to move my booking"),
        ev.AgentStarted(seq=7, at=T + 6, utterance_id="u7", text="Sure, one moment"),
        ev.AgentProgress(
            seq=8, at=T + 7, utterance_id="u7", spoken_text="Sure,", text="Sure, one moment please"
        ),
        ev.AgentFinished(seq=9, at=T + 8, utterance_id="u7", text="Sure, one moment please."),
        ev.Interrupted(
            seq=10,
            at=T + 9,
            utterance_id="u7",
            heard_text="Sure, one",
            unspoken_text=" moment please.",
            audio_end_ms=420,
            overtaken=["c1", "c2"],
        ),
        ev.ToolRequested(
            seq=11,
            at=T + 10,
            call_id="c1",
            name="move_booking",
            args={"booking_id": "B1", "time": "20:00"},
            effect="write",
            idempotent=True,
            on_interrupt="cancel",
            compensate="restore_booking",
            timeout_s=8.5,
            utterance_id="u7",
            turn=2,
        ),
        ev.ToolStarted(
            seq=12, at=T + 11, call_id="c1", attempt=2, idempotency_key="sess-golden:c1"
        ),
        ev.ToolProgress(seq=13, at=T + 12, call_id="c1", data={"step": "locked", "pct": 50}),
        ev.ToolSucceeded(
            seq=14, at=T + 13, call_id="c1", result={"ok": True, "time": "20:00", "ids": [1, 2]}
        ),
        ev.ToolFailed(
            seq=15, at=T + 14, call_id="c2", error="no table free", error_type="Unavailable"
        ),
        ev.ToolCancelled(seq=16, at=T + 15, call_id="c3", reason="caller moved on"),
        ev.ToolInDoubt(seq=17, at=T + 16, call_id="c4", resolution="rerun"),
        ev.ToolDelivery(
            seq=18, at=T + 17, call_id="c1", decision="announced", reason="write after barge-in"
        ),
        ev.UserdataPatch(seq=19, at=T + 18, set={"time": "20:00", "vip": None}, unset=["party"]),
        ev.LinkLost(seq=20, at=T + 19, reason="websocket closed"),
        ev.LinkRestored(seq=21, at=T + 20, gap_s=4.75, flushed=3, dropped=1),
        ev.OutboxDropped(seq=22, at=T + 21, count=7),
        ev.HandoffOffered(
            seq=23, at=T + 22, package_id="pkg-1", to_agent="billing", reason="billing question"
        ),
        ev.HandoffAccepted(
            seq=24, at=T + 23, package_id="pkg-1", agent="billing", epoch=5, from_agent="triage"
        ),
        ev.HandoffReclaimed(seq=25, at=T + 24, package_id="pkg-2", epoch=6),
    ]


def added_events() -> list[ev.Event]:
    """Format-1 events of tags (and fields) added after ``events_v1.jsonl`` was frozen:
    a call whose id the framework reused, and a repeat of a write's intent."""
    return [
        ev.ToolRequested(
            seq=26,
            at=T + 25,
            call_id="c1#2",
            name="move_booking",
            args={"booking_id": "B1", "time": "21:00"},
            effect="write",
            idempotent=True,
            on_interrupt="cancel",
            compensate="restore_booking",
            timeout_s=8.5,
            utterance_id="u7",
            turn=2,
            compensates="c0",
            wire_id="c1",
        ),
        ev.ToolDeduplicated(
            seq=27,
            at=T + 26,
            call_id="c9",
            duplicate_of="c1#2",
            status="succeeded",
            result={"booking_id": "B1", "time": "21:00"},
            error="no error",
            error_type="None",
        ),
    ]


def context_delivered_events() -> list[ev.Event]:
    """``tool.context_delivered`` (added to format 1 later), every field away from its default."""
    return [ev.ToolContextDelivered(seq=26, at=T + 25, call_id="c1", via="pipecat")]


def golden_outbox_events() -> list[ev.Event]:
    """The journaled outbox's events and ``SessionResumed.channel``, every field set."""
    return [
        ev.SessionResumed(
            seq=40, at=T + 40, epoch=5, gap_s=3.5, via="takeover", owner="worker-2", channel="token"
        ),
        ev.OutboxQueued(seq=41, at=T + 41, message={"type": "caption", "text": "hi"}, dropped=1),
        ev.OutboxQueued(seq=42, at=T + 42, utterance_id="u42", text="One moment", dropped=2),
        ev.OutboxSent(seq=43, at=T + 43, count=2),
    ]


def golden_cause_events() -> list[ev.Event]:
    """``SessionResumed.cause`` and ``SessionExpiredEvent.cause``, every field set."""
    return [
        ev.SessionResumed(
            seq=50,
            at=T + 50,
            epoch=6,
            gap_s=4.5,
            via="takeover",
            owner="worker-3",
            channel="id",
            cause="lease_expired",
        ),
        ev.SessionExpiredEvent(
            seq=51, at=T + 51, reason="resume window of 600s passed", cause="link_lost"
        ),
    ]


def golden_state() -> SessionState:
    """A session mid-call: a barge-in over a write whose result is held for the caller."""
    return SessionState(
        session_id="sess-golden",
        agent="triage",
        caller="+15551234567",
        epoch=2,
        seq=14,
        status="active",
        started_at=T,
        last_interaction_at=T + 9,
        items=[
            Item(kind="user", text="I'd like to move my booking", at=T + 1, done=True),
            Item(
                kind="assistant",
                id="u3",
                text="Sure, let me",
                at=T + 2,
                spoken="Sure, let me",
                done=True,
                interrupted=True,
                unspoken=" move that for you.",
            ),
            Item(kind="call", id="c1", at=T + 3, done=True),
            Item(kind="user", text="to eight please", at=T + 5, done=True),
            Item(kind="assistant", id="u9", text="Done", at=T + 9, spoken="Do"),
        ],
        calls={
            "c1": ToolCall(
                call_id="c1",
                name="move_booking",
                args={"booking_id": "B1", "time": "20:00"},
                effect="write",
                idempotent=True,
                compensate="restore_booking",
                timeout_s=8.0,
                utterance_id="u3",
                turn=1,
                status="succeeded",
                attempts=1,
                idempotency_key="sess-golden:c1",
                progress={"step": "locked"},
                result={"ok": True, "time": "20:00"},
                overtaken=True,
                delivery="held",
                requested_at=T + 3,
                finished_at=T + 7,
            ),
        },
        partial="and also",
        turn=2,
        current_utterance="u9",
        unspoken=" move that for you.",
        userdata={"booking": "B1", "time": "20:00"},
        metadata={"channel": "pstn"},
        on_hold=False,
        outbox_dropped=1,
        resumes=1,
    )


def main() -> int:
    """Write each golden file that does not exist yet; never overwrite one."""
    lines = [ev.encode_event(e) for e in golden_events()]
    files = {
        EVENTS_FILE: b"\n".join(lines) + b"\n",
        SNAPSHOT_FILE: msgspec.json.format(encode_state(golden_state()), indent=2) + b"\n",
        SNAPSHOT_V2_FILE: encode_snapshot(golden_state()),
        ADDED_FILE: b"\n".join(ev.encode_event(e) for e in added_events()) + b"\n",
        CONTEXT_DELIVERED_FILE: b"\n".join(ev.encode_event(e) for e in context_delivered_events())
        + b"\n",
        OUTBOX_FILE: b"\n".join(ev.encode_event(e) for e in golden_outbox_events()) + b"\n",
        CAUSES_FILE: b"\n".join(ev.encode_event(e) for e in golden_cause_events()) + b"\n",
    }
    missing = {path: data for path, data in files.items() if not path.exists()}
    if not missing:
        names = ", ".join(p.name for p in files)
        print(f"refusing to overwrite {names}: golden files are frozen", file=sys.stderr)
        return 1
    for path, data in missing.items():
        path.write_bytes(data)
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
