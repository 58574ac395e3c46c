"""examples/openai_agents_voice.py runs offline: a barge-in, a handoff and a drop."""

from __future__ import annotations

from .examples_run import printed


def test_example_voice_call_survives_the_barge_in_the_handoff_and_the_drop() -> None:
    """The table is booked once, the cut reply keeps what was heard, billing takes over
    and, resumed at epoch 3, answers from the recovered conversation."""
    assert [
        "handoff: booking -> billing",
        "book_table succeeded {'party': 2, 'time': '20:00', 'booked': True},"
        " tables booked: ['2 at 20:00']",
        "agent billing, epoch 3",
        "the resumed agent's model got 9 messages:"
        " system user assistant tool assistant user assistant system user",
        "user: Please book a table for two at eight tonight.",
        "assistant (cut, heard): Done, a table for two at eight, [kept aside: and I sent you"
        " a text.]",
        "user: Thanks. I have a question about the deposit.",
        "assistant: I can see your deposit of twenty dollars.",
        "user: Is it refundable?",
        "assistant: Yes, it is refundable until six.",
    ] == printed("openai_agents_voice.py")
