"""Resume benchmark: server-side resume of a 30-minute call (~3,000 events).

One keeper records ``--sessions`` calls of ``--events`` events each, flushing after
every turn as a live call would (so snapshots fall where they would in production),
and lets go of them mid-utterance, as a dropped link does. A second keeper on the same
store, like another worker process, then resumes each call by its token
``--rounds`` times. One resume is everything the server does before the agent may
speak again: verify the token, check the window, claim the lease (epoch+1), load
snapshot + tail, append and flush ``session.resumed``, archive the run it ended,
cancel pending follow-ups and build the ``RecoveryPlan``.

    python bench/bench_resume.py
    python bench/bench_resume.py --store sqlite:////var/tmp/bench.db --sessions 50

Every metric is printed as ``name value``. ``resume_first_*`` are the first resumes
(the run being closed is the whole call); ``resume_*`` covers every round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import callstate
from callstate.continuity.plan import plan

SECRET = b"bench-resume-secret-0123456789abcdef"
USER = "Hi, I'd like to move my dinner booking to eight tonight, it's under Alvarez."
AGENT = "Of course. I found the booking for four under Alvarez and I'm moving it to eight now."


def pct(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def emit(name: str, value: float | int | str) -> None:
    print(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}", flush=True)


async def record_call(keeper: callstate.Keeper, events: int) -> tuple[str, str]:
    """Record one call of about ``events`` events, dropped mid-utterance; returns
    ``(session id, resume token)``."""
    s = await keeper.start(
        caller=f"+1555{uuid.uuid4().int % 10**7:07d}",
        agent="booking",
        session_id=f"bench-{uuid.uuid4().hex[:12]}",
    )
    turn = 0
    while s.state.seq < events - 8:
        s.user_partial(USER[:24])
        s.user_said(USER)
        uid = s.agent_started(AGENT)
        for cut in (20, 45, 70):
            s.agent_progress(uid, spoken_text=AGENT[:cut])
        s.agent_finished(uid)
        if turn % 5 == 0:
            s.update_userdata(turn=turn, booking="B-1042")
        await s.flush()
        turn += 1
    uid = s.agent_started(AGENT)  # the link drops while the agent speaks
    s.agent_progress(uid, spoken_text=AGENT[:30])
    s.user_partial("actually could we")
    await s.flush()
    token = s.resume_token()
    await s.close()
    return s.id, token


async def run(args: argparse.Namespace) -> None:
    store_url = args.store
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if store_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="callstate-bench-")
        store_url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    try:
        async with callstate.Keeper(store_url, secret=SECRET, sweep_every=None) as recorder:
            calls = [await record_call(recorder, args.events) for _ in range(args.sessions)]
            sizes = [(await recorder.store.get(sid)).seq for sid, _ in calls]  # type: ignore[union-attr]
        emit("store", store_url.split("://", 1)[0])
        emit("sessions", args.sessions)
        emit("events_per_session", round(sum(sizes) / len(sizes)))

        async with callstate.Keeper(store_url, secret=SECRET, sweep_every=None) as worker:
            preflight_ms: list[float] = []
            first_ms: list[float] = []
            all_ms: list[float] = []
            plan_ms: list[float] = []
            gc.collect()
            tokens = dict(calls)  # each resume hands out the token the next one must use
            for round_no in range(args.rounds):
                for sid, token in list(tokens.items()):
                    t0 = time.perf_counter()
                    pre = await worker.preflight(token)
                    preflight_ms.append((time.perf_counter() - t0) * 1000)
                    if not pre.resumable:
                        sys.exit(f"session {sid} is not resumable: {pre.reason}")
                    t0 = time.perf_counter()
                    s = await worker.resume(token)
                    elapsed = (time.perf_counter() - t0) * 1000
                    all_ms.append(elapsed)
                    if round_no == 0:
                        first_ms.append(elapsed)
                    t0 = time.perf_counter()
                    plan(s.state, gap_s=1.0, via="resume").context()  # messages included
                    plan_ms.append((time.perf_counter() - t0) * 1000)
                    tokens[sid] = s.token or token
                    await s.close()  # the next round resumes it again, like a second drop
        emit("preflight_p50_ms", pct(preflight_ms, 0.50))
        emit("preflight_p99_ms", pct(preflight_ms, 0.99))
        emit("plan_only_p50_ms", pct(plan_ms, 0.50))
        emit("resume_first_p50_ms", pct(first_ms, 0.50))
        emit("resume_first_p99_ms", pct(first_ms, 0.99))
        emit("resume_samples", len(all_ms))
        emit("resume_p50_ms", pct(all_ms, 0.50))
        emit("resume_p99_ms", pct(all_ms, 0.99))
        emit("resume_max_ms", max(all_ms))
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--store", help="store URL (default: a fresh SQLite file in a temp folder)")
    p.add_argument("--sessions", type=int, default=20, help="calls to record (default 20)")
    p.add_argument("--events", type=int, default=3000, help="events per call (default 3000)")
    p.add_argument("--rounds", type=int, default=5, help="resumes per call (default 5)")
    args = p.parse_args(argv)
    if min(args.sessions, args.events, args.rounds) < 1 or args.events < 20:
        p.error("--sessions and --rounds must be >= 1 and --events >= 20")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
