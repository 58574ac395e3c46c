"""The call the side-by-side benchmark replays: realistic text from a fixed seed.

A turn is a caller sentence (~80 characters), an agent reply (~200 characters) and,
every 4th turn, a booking tool call whose JSON result is ~300 bytes. The text is made of
sentences drawn from a word list, so every turn differs (no repeated "xxxx" that a
compressor or a page cache would flatter).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

SEED = 20261122
TOOL_EVERY = 4

_OPENERS = (
    "I'd like to",
    "Could you",
    "Can we",
    "Please",
    "I need to",
    "We want to",
    "Is it possible to",
    "I was hoping to",
)
_VERBS = (
    "move",
    "check",
    "change",
    "cancel",
    "confirm",
    "book",
    "add",
    "update",
    "look up",
    "extend",
)
_OBJECTS = (
    "my dinner booking",
    "the table for four",
    "our reservation",
    "the booking under my name",
    "the window table",
    "the birthday dinner",
    "tomorrow's lunch",
    "the party of six",
    "my confirmation email",
    "the late sitting",
)
_TAILS = (
    "to eight tonight",
    "for Saturday evening",
    "if there is anything free",
    "before the weekend",
    "with a high chair",
    "near the terrace",
    "for two more people",
    "at the same time next week",
    "on the fourteenth",
    "without the deposit",
)
_REPLY_STARTS = (
    "Of course,",
    "Certainly,",
    "Let me check that for you,",
    "Thanks for waiting,",
    "Good news,",
    "I'm sorry,",
    "Alright,",
    "Sure thing,",
)
_REPLY_BODIES = (
    "I can see the booking for {n} people under {name} on {day}",
    "there is a table free at {time} on {day} by the window",
    "I've moved the reservation to {time} and kept your notes on it",
    "the kitchen closes at eleven so the last sitting is at {time}",
    "I've sent the confirmation to the email address we have on file",
    "the deposit for a party of {n} is twenty pounds per person",
    "we can seat {n} guests on the terrace if the weather holds",
    "your booking reference stays the same after the change",
)
_NAMES = ("Alvarez", "Okafor", "Lindqvist", "Nakamura", "Moreau", "Kowalski", "Patel", "Brennan")
_DAYS = ("Friday", "Saturday", "Sunday", "Monday", "the fourteenth", "next Thursday")
_TIMES = ("7:30", "8:00", "8:15", "8:45", "9:00", "6:30")
_STREETS = ("Harbour Road", "Mill Lane", "Station Square", "Queen Street", "Old Market")
_NOTES = (
    "window seat requested",
    "one guest is vegetarian",
    "celebrating an anniversary",
    "arriving by wheelchair",
    "nut allergy at the table",
    "prefers a quiet corner",
)


def _fit(rng: random.Random, make: Any, target: int) -> str:
    """Sentences from ``make`` joined until the text is about ``target`` characters."""
    text = make(rng)
    while len(text) < target - 25:
        text += " " + make(rng)
    return text


def _user_sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(_OPENERS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
    )


def _reply_sentence(rng: random.Random) -> str:
    body = rng.choice(_REPLY_BODIES).format(
        n=rng.randint(2, 8), name=rng.choice(_NAMES), day=rng.choice(_DAYS), time=rng.choice(_TIMES)
    )
    return f"{rng.choice(_REPLY_STARTS)} {body}."


def _booking(rng: random.Random, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A booking lookup's arguments and its ~300-byte result."""
    booking_id = f"B-{rng.randint(1000, 9999)}"
    args = {"booking_id": booking_id, "time": rng.choice(_TIMES), "party_size": rng.randint(2, 8)}
    result = {
        "booking_id": booking_id,
        "status": rng.choice(("confirmed", "moved", "pending_deposit")),
        "name": rng.choice(_NAMES),
        "party_size": args["party_size"],
        "date": f"2026-11-{rng.randint(10, 28)}",
        "time": args["time"],
        "table": f"T{rng.randint(1, 40)}",
        "restaurant": {
            "name": "The Lantern",
            "address": f"{rng.randint(1, 99)} {rng.choice(_STREETS)}",
        },
        "notes": rng.sample(_NOTES, 2),
        "deposit_gbp": rng.choice((0, 20, 40)),
        "confirmation_sent": rng.random() < 0.5,
        "turn": i,
    }
    return args, result


@dataclass(frozen=True)
class Turn:
    """One turn of the call: what the caller said, the reply, and maybe a tool call."""

    index: int
    user: str
    reply: str
    tool_args: dict[str, Any] | None = None
    tool_result: dict[str, Any] | None = field(default=None)

    def events(self) -> list[dict[str, Any]]:
        """The turn's events as plain dicts (what a hand-written journal would store)."""
        return [
            {"type": "user_said", "turn": self.index, "text": self.user},
            {"type": "agent_started", "turn": self.index, "text": self.reply},
            {"type": "agent_finished", "turn": self.index},
        ]

    def turn_json(self) -> str:
        """The turn's events as one JSON document (the raw floor's row)."""
        return json.dumps(self.events())


def make_call(turns: int, seed: int = SEED) -> list[Turn]:
    """A call of ``turns`` turns; the same ``seed`` gives the same call."""
    rng = random.Random(seed)
    out = []
    for i in range(1, turns + 1):
        user = _fit(rng, _user_sentence, 80)
        reply = _fit(rng, _reply_sentence, 185)
        if i % TOOL_EVERY == 0:
            args, result = _booking(rng, i)
            out.append(Turn(i, user, reply, args, result))
        else:
            out.append(Turn(i, user, reply))
    return out


def call_stats(call: list[Turn]) -> dict[str, float]:
    """Average sizes of the call's parts (printed with the results)."""
    tools = [t for t in call if t.tool_result is not None]
    return {
        "user_chars": sum(len(t.user) for t in call) / len(call),
        "reply_chars": sum(len(t.reply) for t in call) / len(call),
        "tool_result_bytes": (
            sum(len(json.dumps(t.tool_result)) for t in tools) / len(tools) if tools else 0.0
        ),
    }
