"""examples/openai_agents_realtime.py runs offline: a barge-in, a handoff and a drop."""

from __future__ import annotations

from .examples_run import printed


def test_example_call_survives_the_barge_in_the_handoff_and_the_drop() -> None:
    """The tool runs once, the cut answer keeps what was heard, billing carries on at
    epoch 2 after one reconnect, and the caller's last question gets its answer."""
    out = printed("openai_agents_realtime.py")
    assert [
        "handoff: booking -> billing",
        "move_booking succeeded {'booking_id': 'B1', 'time': '20:00', 'moved': True},"
        " bookings moved: ['B1 -> 20:00']",
        "agent billing, epoch 2, reconnects 1",
    ] == out[:3]
    assert out[3].startswith("replayed into the new connection: ")
    assert int(out[3].split()[-2]) >= 4  # at least the two turns and two answers before it
    assert [
        "user: Please move booking B1 to eight tonight.",
        "assistant (cut, heard): Done, B1 is now at  [kept aside: eight, and I]",
        "user: Thanks. I have a question about my bill.",
        "assistant: I can see your bill for last night.",
        "user: How much do I owe?",
        "assistant: You owe twelve dollars.",
    ] == out[4:]
