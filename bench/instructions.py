"""A fixed workload to count instructions with callgrind: repeatable whatever the load.

Wall-clock figures on a shared machine move with its load; instruction counts do not.
Run this under ``valgrind --tool=callgrind`` at two sizes and take the difference over
the extra turns, so start-up and imports cancel out::

    for n in 500 1500; do
      valgrind --tool=callgrind --callgrind-out-file=cg.$n python bench/instructions.py --turns $n
    done   # instructions per turn = (Collected at 1500 - at 500) / 1000

``--what record`` (the hot path): per turn ``user_said`` (~80 characters),
``agent_started`` (~200), ``agent_progress``, ``agent_finished`` and a barge-in every
10th turn, on ``memory://``, with the queue drained by hand so nothing but recording
runs. ``--what durable`` (a durable turn): ``user_said``, ``agent_started``,
``agent_finished`` and ``await flush()`` on a SQLite file (``synchronous=FULL``), the
store's thread included, as ``bench/peers``' callstate system does; ``--store URL``
runs it on another store instead (``postgresql://…?schema=…``, ``redis://…?prefix=…``:
the client's side only, the server's instructions are another process's). ``--what
tool`` (a durable write tool call): ``run_tool`` of the peers call's booking tool, its
intent and its outcome each durable before it returns. The text is the peers call's
(``bench/peers/workload.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))

from workload import make_call

import callstate


async def record(turns: int) -> None:
    """Only the hot path: every recorded event is dropped from the queue by hand."""
    call = make_call(300)
    async with callstate.Keeper("memory://") as keeper:
        s = await keeper.start(agent="bench")
        journal = s.journal
        for i in range(turns):
            t = call[i % len(call)]
            s.user_said(t.user)
            u = s.agent_started(t.reply)
            s.agent_progress(u, spoken_text=t.reply[: len(t.reply) // 2])
            s.agent_finished(u)
            if i % 10 == 9:
                s.interrupt(heard_text="")
            journal.pending.clear()
        journal.durable_seq = s.state.seq
        await s.close()


async def durable(turns: int, store: str | None) -> None:
    """Durable turns on a SQLite file (or ``store``), each flushed before the next."""
    call = make_call(300)
    with tempfile.TemporaryDirectory() as tmp:
        url = store or f"sqlite:///{tmp}/instructions.db"
        async with callstate.Keeper(url, secret=b"bench-instructions-secret-32byte") as keeper:
            s = await keeper.start(agent="bench", caller="+15550001111")
            for i in range(turns):
                t = call[i % len(call)]
                s.user_said(t.user)
                u = s.agent_started(t.reply)
                s.agent_finished(u)
                await s.flush()
            await s.close()


async def tool(turns: int, store: str | None) -> None:
    """Durable write tool calls on a SQLite file (or ``store``): ``run_tool`` of the
    peers call's booking tool, its intent and its outcome each made durable."""
    call = [t for t in make_call(max(4 * turns, 300)) if t.tool_result is not None]
    results: dict[str, object] = {}
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str, time: str, party_size: int) -> object:
        return results[f"{booking_id}/{time}/{party_size}"]

    with tempfile.TemporaryDirectory() as tmp:
        url = store or f"sqlite:///{tmp}/instructions.db"
        secret = b"bench-instructions-secret-32byte"
        async with callstate.Keeper(url, secret=secret, tools=tools) as keeper:
            s = await keeper.start(agent="bench", caller="+15550001111")
            for i in range(turns):
                t = call[i % len(call)]
                args = dict(t.tool_args or {})
                results[f"{args['booking_id']}/{args['time']}/{args['party_size']}"] = t.tool_result
                await s.run_tool("move_booking", args, call_id=f"call_{i}")
            await s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=("record", "durable", "tool"), default="record")
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--store", help="a store URL for --what durable (default: a SQLite file)")
    args = parser.parse_args()
    if args.what == "record":
        work = record(args.turns)
    elif args.what == "durable":
        work = durable(args.turns, args.store)
    else:
        work = tool(args.turns, args.store)
    asyncio.run(work)
    print(f"{args.what}_turns {args.turns}")


if __name__ == "__main__":
    main()
