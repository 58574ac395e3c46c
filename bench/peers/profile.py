"""Where a durable turn's and a resume's time goes, per engine, with pyinstrument.

    python bench/peers/profile.py                          # every engine, 300 turns
    python bench/peers/profile.py --engines sqlite --turns 1000 --resume 10000

Replays the workload's call on callstate (as ``run.py``'s ``callstate`` system does) under
pyinstrument, then resumes a stored call of ``--resume`` events 20 times under it, and
prints both profiles as text (``pyinstrument`` is in the ``peers`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measures
import systems
from engines import engines, note
from pyinstrument import Profiler
from workload import make_call

import callstate


async def profile_engine(engine: str, e: object, turns: int, resume: int) -> None:
    """Print the profile of ``turns`` durable turns and of 20 resumes on ``engine``."""
    call = make_call(turns)
    cs = systems.Callstate(engine, e)  # type: ignore[arg-type]
    await cs.open()
    await cs.begin_call()
    profiler = Profiler(interval=0.0002, async_mode="enabled")
    profiler.start()
    for t in call:
        await cs.turn(t)
        if t.tool_result is not None:
            await cs.tool(t)
    profiler.stop()
    await cs.end_call()
    await cs.close()
    note(f"== {engine}: {turns} durable turns")
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    url = systems.callstate_url(engine, e, "profile")  # type: ignore[arg-type]
    sid, _ = await measures.build_callstate(url, resume, call)
    async with callstate.Keeper(url) as second:
        profiler = Profiler(interval=0.0002, async_mode="enabled")
        profiler.start()
        for _ in range(20):
            s = await second.resume(sid)
            await s.close()
        profiler.stop()
    note(f"== {engine}: 20 resumes of a {resume}-event call")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,postgres,redis")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--resume", type=int, default=10000, help="events of the resumed call")
    args = parser.parse_args()
    selected = [x for x in args.engines.split(",") if x]

    async def run() -> None:
        with engines(set(selected)) as e:
            for engine in selected:
                await profile_engine(engine, e, args.turns, args.resume)

    asyncio.run(run())


if __name__ == "__main__":
    main()
