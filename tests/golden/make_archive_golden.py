"""Write ``archive_v1.json``, the golden ArchiveRecord of format version 1, and
``archive_v1_health.json``, the same call once records carried a health class (run once).

It refuses to overwrite an existing file: the golden must stay what v1 wrote.
Run: ``.venv/bin/python tests/golden/make_archive_golden.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from callstate.archive.records import build_record, encode_record
from callstate.journal import events as ev
from callstate.journal.state import fold

OUT = Path(__file__).with_name("archive_v1.json")
HEALTH_OUT = Path(__file__).with_name("archive_v1_health.json")


def golden_events() -> list[ev.Event]:
    """A resumed phone call: drop, resume, barge-in over a write, link blip, hang-up."""
    t = 1_700_000_000.0
    raw: list[ev.Event] = [
        ev.SessionStarted(
            at=t,
            session_id="golden-session",
            agent="triage",
            caller="+15551234567",
            userdata={"booking": "B1"},
            metadata={"channel": "phone"},
        ),
        ev.UserTurn(at=t + 1, text="I'd like to move my booking"),
        ev.AgentStarted(at=t + 2, utterance_id="u1", text="Sure, one moment"),
        ev.AgentFinished(at=t + 3, utterance_id="u1"),
        ev.SessionResumed(at=t + 11, epoch=2, gap_s=8.0, via="resume", owner="worker-2"),
        ev.ToolRequested(
            at=t + 12,
            call_id="c1",
            name="move_booking",
            args={"booking_id": "B1", "time": "20:00"},
            effect="write",
            idempotent=True,
        ),
        ev.ToolStarted(at=t + 12, call_id="c1", idempotency_key="golden-session:c1"),
        ev.AgentStarted(at=t + 13, utterance_id="u2", text="I'm moving it to eight now"),
        ev.Interrupted(
            at=t + 14,
            utterance_id="u2",
            heard_text="I'm moving it",
            unspoken_text="to eight now",
            overtaken=["c1"],
        ),
        ev.ToolSucceeded(at=t + 15, call_id="c1", result={"ok": True, "time": "20:00"}),
        ev.ToolDelivery(at=t + 15, call_id="c1", decision="held"),
        ev.UserTurn(at=t + 16, text="thanks"),
        ev.ToolDelivery(at=t + 16, call_id="c1", decision="announced", reason="write"),
        ev.LinkLost(at=t + 20, reason="network switch"),
        ev.LinkRestored(at=t + 22, gap_s=2.0, flushed=3, dropped=0),
        ev.SessionEnded(at=t + 30, reason="caller_hangup"),
    ]
    return [msgspec.structs.replace(e, seq=i) for i, e in enumerate(raw, start=1)]


def golden_bytes() -> bytes:
    state = fold(golden_events())
    record = build_record(state, outcome="recovered", closed_at=1_700_000_031.0)
    return msgspec.json.format(encode_record(record), indent=2) + b"\n"


def health_events() -> list[ev.Event]:
    """The golden call, its resume journaling why the first owner lost it."""
    return [
        msgspec.structs.replace(e, cause="link_lost") if isinstance(e, ev.SessionResumed) else e
        for e in golden_events()
    ]


def health_golden_bytes() -> bytes:
    state = fold(health_events())
    record = build_record(state, outcome="recovered", closed_at=1_700_000_031.0)
    return msgspec.json.format(encode_record(record), indent=2) + b"\n"


if __name__ == "__main__":
    written = 0
    for path, make in ((OUT, golden_bytes), (HEALTH_OUT, health_golden_bytes)):
        if not path.exists():
            path.write_bytes(make())
            print(f"wrote {path}")
            written += 1
    if not written:
        sys.exit("golden archive files exist; golden files are never regenerated")
