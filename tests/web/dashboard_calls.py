"""Real calls recorded through a real keeper, for the dashboard's tests and screenshot.

``seed(Rig(url, clock))`` plays, on a fake clock set a couple of hours before now:

- ``booking``: a caller asks, a read runs, a write is overtaken by a barge-in, its
  result is held and then announced, the link drops and comes back (a hold), the call
  is handed off to ``billing`` (leg 2) which runs a tool and is hung up, the caller rings
  back within the grace (leg 3, a resume) and hangs up; one follow-up then runs.
- ``in_doubt``: a card charge is running when the worker lets go of the call; another
  takes it over and the charge is in doubt (``unknown``: a write is never re-run).
- three short calls: one completed, one failed, one abandoned (it expires).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import callstate
from callstate.testing import FakeClock

SECRET = b"dashboard-test-secret-0123456789"
CALLER = "+15551234567"
GRACE = 30.0


@dataclass
class Seeded:
    """The session ids the seed recorded."""

    booking: str
    completed: str
    failed: str
    in_doubt: str
    abandoned: str


def registry(
    clock: FakeClock, gate: asyncio.Event, entered: asyncio.Event
) -> callstate.ToolRegistry:
    """Tools whose runs take time on the fake clock; ``move_booking`` waits for ``gate``."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def check_availability(date: str) -> dict[str, Any]:
        clock.advance(1.5)
        return {"date": date, "free": ["20:00", "21:00"]}

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(
        booking_id: str, time: str, *, ctx: callstate.ToolContext
    ) -> dict[str, Any]:
        entered.set()
        await gate.wait()
        clock.advance(0.8)
        return {"booking_id": booking_id, "time": time, "key": ctx.idempotency_key}

    @tools.tool(effect="write")
    async def charge_card(amount: int) -> dict[str, Any]:
        entered.set()
        await asyncio.Event().wait()  # the worker lets go of the call while this runs
        return {"charged": amount}

    @tools.tool(effect="read")
    async def lookup_invoice(invoice_id: str) -> dict[str, Any]:
        clock.advance(2.0)
        return {"invoice_id": invoice_id, "charges": 2}

    return tools


class Rig:
    """A keeper with the seed's tools and a follow-up on ``url``, and its fake clock."""

    def __init__(self, url: str, clock: FakeClock) -> None:
        self.clock = clock
        self.gate, self.entered = asyncio.Event(), asyncio.Event()
        tools = registry(clock, self.gate, self.entered)
        self.keeper = callstate.Keeper(
            url,
            secret=SECRET,
            clock=clock,
            sweep_every=None,
            tools=tools,
            purge_after=30 * 86_400.0,
        )
        self.keeper.on_call_complete(
            lambda call: {"legs": len(call.legs)}, grace=GRACE, name="summary"
        )


def say(s: callstate.Session, clock: FakeClock, text: str, seconds: float = 2.0) -> None:
    """The agent says ``text`` in full over ``seconds``."""
    u = s.agent_started(text)
    clock.advance(seconds)
    s.agent_finished(u)


async def _booking(rig: Rig) -> str:
    k, clock, gate, entered = rig.keeper, rig.clock, rig.gate, rig.entered
    s = await k.start(caller=CALLER, agent="triage")
    clock.advance(1.0)
    s.user_partial("I'd like to move")
    clock.advance(1.5)
    s.user_said("I'd like to move my booking to eight tonight")
    clock.advance(0.5)
    say(s, clock, "Let me check what's free tonight.")
    await s.run_tool("check_availability", {"date": "today"}, call_id="c1")
    clock.advance(0.5)
    u = s.agent_started("Eight is free. Moving your booking now, and then I'll read it back.")
    move = asyncio.create_task(
        s.run_tool("move_booking", {"booking_id": "B7", "time": "20:00"}, call_id="c2")
    )
    await entered.wait()
    clock.advance(1.2)
    s.agent_progress(u, spoken_text="Eight is free. Moving your booking now,")
    clock.advance(0.3)
    s.interrupt(audio_end_ms=1500)  # the caller barges in while the write runs
    clock.advance(0.4)
    s.user_partial("wait, make it")
    gate.set()
    await move  # lands while the caller talks: held
    clock.advance(1.1)
    s.user_said("wait, make it for two people")  # the turn ends: the write is announced
    clock.advance(0.5)
    say(s, clock, "Done: your booking is at eight. I'll note two people.", 2.5)
    clock.advance(1.0)
    s.connection_lost("network switch")
    clock.advance(4.0)
    s.connection_restored()
    clock.advance(1.0)
    s.user_said("Also, I was charged twice last month")
    clock.advance(0.5)
    pkg = await s.handoff(to="billing", reason="billing question")
    clock.advance(1.5)
    b = await k.accept(pkg.to_bytes())
    say(b, clock, "Billing here. Let me look at last month's invoice.")
    await b.run_tool("lookup_invoice", {"invoice_id": "INV-42"}, call_id="c3")
    clock.advance(0.5)
    say(b, clock, "I see two charges; I've refunded one.", 2.0)
    clock.advance(1.0)
    await b.end(reason="caller_hangup")
    clock.advance(25.0)
    back = await k.resume_caller(CALLER)  # rings back within the grace
    assert back is not None
    clock.advance(0.6)
    back.connection_restored()  # the new call's audio is up
    clock.advance(1.0)
    back.user_said("Sorry, I got cut off. Is the refund done?")
    clock.advance(0.5)
    say(back, clock, "Yes, the refund is on its way.")
    clock.advance(1.0)
    await back.end(reason="caller_hangup")
    clock.advance(GRACE + 1)
    await k.sweep()  # the follow-up of the whole call runs
    return s.id


async def _short(k: callstate.Keeper, clock: FakeClock, *, how: str) -> str:
    s = await k.start(caller=f"+1555000{len(how):04d}", agent="triage")
    clock.advance(1.0)
    s.user_said(f"A {how} call")
    clock.advance(0.5)
    say(s, clock, "Sure.")
    if how == "failed":
        await s.fail("tts_error")
    elif how == "completed":
        await s.end(reason="caller_hangup")
    else:
        await s.close()  # the worker goes away; the call expires
    return s.id


async def _in_doubt(rig: Rig) -> str:
    k, clock = rig.keeper, rig.clock
    rig.entered.clear()
    s = await k.start(caller="+15550009999", agent="payments")
    clock.advance(1.0)
    s.user_said("Please pay the invoice with my card")
    charge = asyncio.create_task(s.run_tool("charge_card", {"amount": 42}, call_id="p1"))
    await rig.entered.wait()
    clock.advance(1.0)
    await s.close()  # the worker goes away mid-charge: the write is in doubt
    await asyncio.gather(charge, return_exceptions=True)
    clock.advance(6.0)
    again = await k.resume(s.id, takeover=True)  # another worker takes the call over
    clock.advance(0.5)
    again.connection_restored()
    say(again, clock, "I can't tell whether the payment went through; let me check.")
    clock.advance(1.0)
    await again.end(reason="caller_hangup")
    return s.id


async def seed(rig: Rig) -> Seeded:
    """Record the calls (see the module doc) through the rig's open keeper."""
    k, clock = rig.keeper, rig.clock
    completed = await _short(k, clock, how="completed")
    clock.advance(900)
    booking = await _booking(rig)
    clock.advance(1200)
    failed = await _short(k, clock, how="failed")
    clock.advance(300)
    in_doubt = await _in_doubt(rig)
    clock.advance(300)
    abandoned = await _short(k, clock, how="abandoned")
    clock.advance(k.resume_window + 120)
    await k.sweep()
    return Seeded(
        booking=booking,
        completed=completed,
        failed=failed,
        in_doubt=in_doubt,
        abandoned=abandoned,
    )
