"""``callstate demo``, continued: a page reload resumed by token, a phone caller who
hangs up and rings back, one follow-up of the whole call after its grace, and a
session left to expire.

These scenes run after the crash-and-resume scenes, on the same database. They use a
second keeper whose clock is a ``FakeClock``, so "five minutes later" takes no time.
The clock starts past the resume window of every session an earlier run left in the
database, so the demo runs again and again on one database and never finds an earlier
run's caller. The scenes never run a whole sweep, which would also expire the other
scenes' sessions on the fast-forwarded clock: the follow-ups run through
``keeper.followups`` (what the sweep calls) and the silent caller's session expires
when a resume finds it past its window. Expired sessions are kept for a day
(``purge_after``) so ``callstate inspect`` still shows them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..archive.calls import CallRecord
from ..errors import SessionExpired
from ..keeper import Keeper
from ..testing.clock import FakeClock
from .archive import records_table
from .demo import DEMO_SECRET, DemoRun, scene
from .main import store_url
from .timeline import clock_time

__all__ = ["Continuity"]

PHONE_CALLER = "+15557654321"
PHONE_1 = "Please add a birthday cake to my booking."
PHONE_2 = "Sorry, the line dropped. And can it say Happy Birthday, Ana?"
PHONE_AGENT = "Welcome back! I've added the birthday cake, with “Happy Birthday, Ana” on it."
SILENT_CALLER = "+15550001111"
WEB_UNSPOKEN = "and arrives on Friday before noon."
WEB_SAID = "Your order shipped this morning"


@dataclass
class Continuity:
    """The second keeper and what its scenes produced."""

    keeper: Keeper
    clock: FakeClock
    session_ids: list[str] = field(default_factory=list)
    phone_id: str = ""
    calls: dict[str, CallRecord] = field(default_factory=dict)


async def _after_earlier_runs(keeper: Keeper, skip: str) -> float:
    """The first moment no session an earlier run left behind is resumable (0: none)."""
    store = keeper.store
    times = [
        r.last_interaction_at for r in await store.list_sessions(limit=50) if r.session_id != skip
    ]
    times += [r.ended_at for r in await store.archive_list(limit=50) if r.session_id != skip]
    return max(times) + keeper.resume_window + 1.0 if times else 0.0


_RUNS: dict[int, Continuity] = {}


async def _continuity(run: DemoRun) -> Continuity:
    c = _RUNS.get(id(run))
    if c is None:
        clock = FakeClock(time.time())
        keeper = Keeper(
            store_url(run.db),
            secret=DEMO_SECRET,
            clock=clock,
            sweep_every=None,  # the scenes sweep when the story says so
            purge_after=86_400.0,
        )
        await keeper.open()
        clock.set(max(clock.now(), await _after_earlier_runs(keeper, run.session_id)))
        c = _RUNS[id(run)] = Continuity(keeper=keeper, clock=clock)

        def follow_up(call: CallRecord) -> dict[str, object]:
            c.calls[call.call_id] = call  # a real one would open tickets, text the caller…
            return {"handled": call.requests_since_last_followup}

        keeper.on_call_complete(follow_up, grace=300.0, name="demo.follow_up")
    return c


@scene
async def page_reload(run: DemoRun) -> None:
    """A web call: the page reloads mid-sentence and resumes with its token."""
    c = await _continuity(run)
    k, clock = c.keeper, c.clock
    run.heading("a web call: the page reloads and resumes by token")
    s = await k.start(agent="web", metadata={"channel": "web"})
    c.session_ids.append(s.id)
    sent: list[object] = []
    s.outbox.connect(sent.append)
    s.user_said("Can you check where my order is?")
    run.say("caller", "Can you check where my order is?")
    uid = s.agent_started(f"{WEB_SAID} {WEB_UNSPOKEN}")
    s.agent_progress(uid, spoken_text=WEB_SAID)
    run.say("agent", f"{WEB_SAID}… (the page reloads here)")
    s.connection_lost(reason="page reload")
    s.outbox.send({"type": "transcript", "text": WEB_SAID})
    run.say(
        "hold", f"on hold: the agent stays silent; {len(s.outbox)} message queued in the outbox"
    )
    token = s.resume_token()
    run.say("token", f"{token[:28]}… ({len(token)} chars, signed, bound to this session)")
    await s.close()
    clock.advance(3)
    pre = await k.preflight(token)
    expires = clock_time(pre.expires_at) if pre.expires_at else "-"
    run.say("preflight", f"{pre.status}: agent {pre.agent!r}, resumable until {expires}")
    s2 = await k.resume(token)
    plan = s2.recovery
    run.say(
        "resume",
        f"keeper.resume(token) → epoch {s2.state.epoch}, gap {plan.gap_s:.0f} s"
        if plan
        else "no plan",
    )
    if plan is None or WEB_UNSPOKEN.rstrip(".") not in plan.resume_note or s2.state.epoch != 2:
        run.problems.append("the page-reload resume did not restore the interrupted sentence")
    else:
        run.say("note", plan.resume_note)
    s2.outbox.connect(sent.append)
    s2.connection_restored()  # the reloaded page's socket is open: the outbox goes out
    uid = s2.agent_started("As I was saying, it arrives on Friday before noon.")
    s2.agent_finished(uid)
    await s2.end(reason="page closed")
    run.say("session", "ended (the archive has one record per ownership run)")


@scene
async def phone_callback(run: DemoRun) -> None:
    """A phone caller hangs up and rings back: resumed by caller id."""
    c = await _continuity(run)
    k, clock = c.keeper, c.clock
    run.heading("a phone caller hangs up, then rings back")
    s = await k.start(caller=PHONE_CALLER, agent="phone")
    c.session_ids.append(s.id)
    c.phone_id = s.id
    s.user_said(PHONE_1)
    run.say("caller", PHONE_1)
    await s.end(reason="caller_hangup")
    run.say("hang-up", "the caller hangs up before the agent answers")
    clock.advance(40)
    cancelled = k.observer.counts.get("followup.cancelled", 0)
    back = await k.resume_caller(PHONE_CALLER)
    if back is None or back.id != s.id:
        run.problems.append("resume_caller did not find the returning caller's call")
        return
    run.say(
        "ring back",
        f"40 s later: keeper.resume_caller(…) → {back.id} at epoch {back.state.epoch} "
        "(the index holds a keyed hash of the number, never the number)",
    )
    await k.observer.drain()
    if k.observer.counts.get("followup.cancelled", 0) <= cancelled:
        run.problems.append("the returning caller did not cancel the first call's follow-up")
    run.say("follow-up", "the hang-up's follow-up is cancelled: the caller came back")
    back.user_said(PHONE_2)
    run.say("caller", PHONE_2)
    uid = back.agent_started(PHONE_AGENT)
    back.agent_finished(uid)
    run.say("agent", PHONE_AGENT)
    await back.end(reason="caller_hangup")
    run.say("hang-up", "the caller hangs up for good; this close schedules the call's follow-up")


@scene
async def follow_ups(run: DemoRun) -> None:
    """Five minutes later one follow-up per call runs, given every leg of it."""
    c = await _continuity(run)
    run.heading("five minutes later: one follow-up per call, given the whole call")
    c.clock.advance(301)
    await c.keeper.followups.run_due(c.clock.now())  # the sweep's follow-up step
    for sid in c.session_ids:
        call = c.calls.get(sid)
        if call is None:
            run.problems.append(f"the follow-up of call {sid} did not run")
            continue
        asks = " ".join(f"“{a}”" for a in call.requests_since_last_followup) or "nothing"
        legs = ", ".join(f":{r.epoch} {r.outcome}" for r in call.legs)
        run.say(
            "follow-up",
            f"{call.idempotency_key} (idempotency key): legs {legs}; the caller asked {asks}",
        )
    phone = c.calls.get(c.phone_id)
    if phone is not None and [PHONE_1, PHONE_2] != phone.requests_since_last_followup:
        run.problems.append("the ring-back's follow-up did not get both legs' requests")


@scene
async def expiry(run: DemoRun) -> None:
    """A caller who never comes back: the session expires and is archived abandoned."""
    c = await _continuity(run)
    k = c.keeper
    try:
        run.heading("a caller who never comes back")
        s = await k.start(caller=SILENT_CALLER, agent="phone")
        c.session_ids.append(s.id)
        s.user_said("Hello? Can you hear me?")
        run.say("caller", "Hello? Can you hear me?")
        await s.close()
        run.say("drop", "the line drops and nobody calls back")
        c.clock.advance(601)
        pre = await k.preflight(s.id)
        run.say("preflight", f"10 minutes later: {pre.status}")
        try:
            await k.resume(s.id)
            run.problems.append("an expired session was resumed")
        except SessionExpired as exc:
            run.say("resume", f"SessionExpired: {exc}")
        mine = [r for sid in c.session_ids for r in await k.archive.list(session_id=sid)]
        mine.sort(key=lambda r: (r.timings.ended_at, r.record_id))
        run.out.print(records_table(mine, title="the archive: one record per leg of each call"))
        if [] == [r for r in mine if r.outcome == "abandoned"]:
            run.problems.append("the expired call was not archived as abandoned")
        run.out.print(f"See them again with: callstate archive list --db {run.db}")
        if c.phone_id:
            run.out.print(
                f"The whole phone call: callstate archive call {c.phone_id} --db {run.db}"
            )
    finally:
        _RUNS.pop(id(run), None)
        await k.close()
