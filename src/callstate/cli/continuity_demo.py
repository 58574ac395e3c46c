"""``callstate demo``, continued: a page reload resumed by token, a phone caller who
hangs up and rings back, a follow-up after its grace, and a session left to expire.

These scenes run after the crash-and-resume scenes, on the same database. They use a
second keeper whose clock is a ``FakeClock``, so "five minutes later" takes no time.
They never run a whole sweep, which would also expire the other scenes' sessions on
the fast-forwarded clock: the follow-ups run through ``keeper.followups`` (what the
sweep calls) and the silent caller's session expires when a resume finds it past its
window. Expired sessions are kept for a day (``purge_after``) so ``callstate inspect``
still shows them.
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
SILENT_CALLER = "+15550001111"
WEB_UNSPOKEN = "and arrives on Friday before noon."
WEB_SAID = "Your order shipped this morning"


@dataclass
class Continuity:
    """The second keeper and what its scenes produced."""

    keeper: Keeper
    clock: FakeClock
    session_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


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
        c = _RUNS[id(run)] = Continuity(keeper=keeper, clock=clock)

        def text_summary(record: CallRecord) -> None:
            turns = sum(1 for i in record.transcript if i.kind == "user")
            c.texts.append(
                f"summary of {record.record_id} ({record.outcome}, {turns} caller turn(s)) "
                f"sent to {record.caller or 'the web user'}"
            )

        keeper.on_call_complete(text_summary, grace=300.0, name="demo.text_summary")
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
    s.user_said("Please add a birthday cake to my booking.")
    run.say("caller", "Please add a birthday cake to my booking.")
    await s.end(reason="caller_hangup")
    run.say("hang-up", "the caller hangs up before the agent answers")
    clock.advance(40)
    back = await k.resume_caller(PHONE_CALLER)
    if back is None:
        run.problems.append("resume_caller found no session for the returning caller")
        return
    run.say(
        "ring back",
        f"40 s later: keeper.resume_caller(…) → {back.id} at epoch {back.state.epoch} "
        "(the index holds a keyed hash of the number, never the number)",
    )
    if not k.observer.counts.get("followup.cancelled"):
        run.problems.append("the returning caller did not cancel the first call's follow-up")
    run.say("follow-up", "the first call's post-call follow-up is cancelled: the caller came back")
    uid = back.agent_started("Welcome back! I've added the birthday cake.")
    back.agent_finished(uid)
    run.say("agent", "Welcome back! I've added the birthday cake.")
    await back.end(reason="caller_hangup")


@scene
async def follow_ups(run: DemoRun) -> None:
    """Five minutes later the follow-ups of the finished calls run, once each."""
    c = await _continuity(run)
    run.heading("five minutes later: post-call follow-ups run")
    c.clock.advance(301)
    ran = await c.keeper.followups.run_due(c.clock.now())  # the sweep's follow-up step
    for text in c.texts:
        run.say("follow-up", text)
    if ran < 2:
        run.problems.append(f"expected the 2 finished calls' follow-ups to run, {ran} did")


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
        run.out.print(records_table(mine, title="the archive: one record per call"))
        if [] == [r for r in mine if r.outcome == "abandoned"]:
            run.problems.append("the expired call was not archived as abandoned")
        run.out.print(f"See them again with: callstate archive list --db {run.db}")
    finally:
        _RUNS.pop(id(run), None)
        await k.close()
