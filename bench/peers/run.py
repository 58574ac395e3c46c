"""callstate side by side with each engine's raw floor and LangGraph's checkpointers.

One command::

    python bench/peers/run.py                      # 5 rounds, 300-turn call, every engine
    python bench/peers/run.py --engines sqlite --rounds 3 --out report.md
    python bench/peers/run.py --quick              # a smoke run, seconds

Every system replays the same realistic call (``workload.py``). Round ``r`` runs each
system once, in an order rotated by ``r``; each figure is the median over rounds, and
every ratio is printed per round and as the median of the per-round ratios. stdout holds
only ``name value`` lines; notes go to stderr; ``--out`` writes a markdown report.

Systems: ``callstate`` (public API only), ``floor`` (one durable write of the turn's events
as JSON, by hand: the least any durable journal must pay), ``langgraph`` (the saver's
``put``/``aput`` of a checkpoint holding the messages) and ``langgraph_graph`` (a compiled
one-node graph run with ``durability="sync"``). LangGraph needs the ``peers`` extra;
without it its columns are left out and a note says so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sqlite3
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import measures
import systems
from engines import engines, note
from workload import call_stats, make_call

import callstate

ENGINES = ("sqlite", "postgres", "redis")
MEASURES = ("call", "breakdown", "resume", "sustained", "hot")
SYSTEMS = ("callstate", "floor", "langgraph", "langgraph_graph")
# (numerator, denominator) of the cross-system ratios printed for every metric
PAIRS = (
    ("callstate", "floor"),
    ("langgraph", "floor"),
    ("langgraph_graph", "floor"),
    ("callstate", "langgraph"),
    ("callstate", "langgraph_graph"),
    ("callstate_normal", "floor_normal"),
    ("callstate", "list_append"),
)


def langgraph_version() -> str | None:
    """The installed langgraph version, or None (with a note) when it cannot be imported."""
    try:
        import lg

        return lg.version()
    except ImportError as exc:
        note(f"note: LangGraph columns skipped: {exc} (pip install 'callstate[peers]')")
        return None


def fmt(value: float) -> str:
    """A metric value as printed: integers plain, the rest to 4 significant digits."""
    if float(value).is_integer() and abs(value) >= 1000:
        return str(int(value))
    return f"{value:.4g}"


def emit(res: measures.Results) -> dict[str, str]:
    """Print every metric (per round, median, ratios) and return what was printed."""
    out: dict[str, str] = {}

    def line(name: str, value: float | str) -> None:
        text = value if isinstance(value, str) else fmt(value)
        out[name] = text
        print(f"{name} {text}", flush=True)

    for metric, by_system in res.values.items():
        for system, values in by_system.items():
            for r, v in enumerate(values, 1):
                line(f"{metric}_{system}_r{r}", v)
            line(f"{metric}_{system}", statistics.median(values))
        if metric in res.no_ratio:
            continue
        for a, b in PAIRS:
            if a in by_system and b in by_system and all(v > 0 for v in by_system[b]):
                ratios = [x / y for x, y in zip(by_system[a], by_system[b], strict=True)]
                for r, v in enumerate(ratios, 1):
                    line(f"{metric}_{a}_over_{b}_r{r}", v)
                line(f"{metric}_{a}_over_{b}", statistics.median(ratios))
    return out


def _factories(engine: str, e: object, lg_ok: bool, chosen: Sequence[str]) -> list[object]:
    fs: dict[str, object] = {
        "callstate": lambda: measures.TimedCallstate(engine, e),
        "floor": lambda: systems.floor(engine, e),
    }
    if lg_ok and engine in ("sqlite", "postgres"):
        import lg

        fs["langgraph"] = lambda: lg.Saver(engine, e)
        fs["langgraph_graph"] = lambda: lg.Graph(engine, e)
    return [make for name, make in fs.items() if name in chosen]


async def run(args: argparse.Namespace) -> measures.Results:
    """Every measure, on every selected engine, in rounds."""
    res = measures.Results()
    lg_ok = args.langgraph is not None
    call = make_call(args.turns)
    with engines(set(args.engines)) as e:
        if "redis" in args.engines:
            note(f"redis: {e.redis_how} ({e.redis_base})")
        for r in range(args.rounds if "call" in args.only else 0):
            for engine in measures.rotated(args.engines, r):
                note(f"round {r + 1}/{args.rounds}: {args.turns}-turn call on {engine}")
                fs = _factories(engine, e, lg_ok, args.systems)
                await measures.call_round(res, engine, fs, call, e, r)
        if (
            "sqlite" in args.engines and "breakdown" in args.only
        ):  # where callstate's durable SQLite turn goes
            short = call[: args.breakdown_turns]
            fs = [
                lambda: measures.TimedCallstate("sqlite", e),
                lambda: measures.TimedCallstate("sqlite", e, synchronous="NORMAL"),
                lambda: systems.floor("sqlite", e),
                lambda: systems.floor("sqlite", e, synchronous="NORMAL"),
            ]
            for r in range(args.rounds):
                note(f"round {r + 1}/{args.rounds}: SQLite FULL/NORMAL breakdown")
                await measures.call_round(res, "sqlite", fs, short, e, r, prefix="breakdown_")
        for engine in args.engines if "resume" in args.only else ():
            note(f"resume on {engine}: sizes {args.resume_sizes}")
            await measures.resume_rounds(
                res, engine, e, call, args.resume_sizes, args.rounds, args.resume_reps, lg_ok
            )
        for r in range(args.rounds if "sustained" in args.only else 0):
            for engine in measures.rotated(args.engines, r):
                note(f"round {r + 1}/{args.rounds}: sustained, {args.sessions} sessions, {engine}")
                order = measures.rotated(["callstate", "floor"], r)
                for name in order:
                    if name == "callstate":
                        url = systems.callstate_url(engine, e, "sustained")
                        v = await measures.sustained_callstate(
                            url, args.sessions, args.sustained_turns, call
                        )
                    else:
                        v = await measures.sustained_floor(
                            engine, e, args.sessions, args.sustained_turns, call
                        )
                    res.add(f"{engine}_sustained_events_per_s", name, v)
        hot_engine = "sqlite" if "sqlite" in args.engines else args.engines[0]
        for r in range(args.rounds if "hot" in args.only else 0):
            note(f"round {r + 1}/{args.rounds}: hot path on {hot_engine}")
            url = systems.callstate_url(hot_engine, e, "hot")
            await measures.hot_path_round(res, url, call, args.record_passes, r)
    return res


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def report(args: argparse.Namespace, res: measures.Results, load: tuple[str, str]) -> str:
    """The markdown report: one table per measure, medians and median ratios."""
    stats = call_stats(make_call(args.turns))
    lines = [
        "# callstate side by side: raw floors and LangGraph",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
        f"- load average (1, 5, 15 min): {load[0]} before, {load[1]} after",
        f"- callstate {callstate.__version__}; langgraph {args.langgraph or 'not installed'}",
        f"- rounds {args.rounds}, call of {args.turns} turns (user {stats['user_chars']:.0f} chars, "
        f"reply {stats['reply_chars']:.0f} chars, tool result {stats['tool_result_bytes']:.0f} "
        "bytes every 4th turn)",
        "",
        "Each cell is the median over rounds; each `a / b` column is the median of the per-round ratios.",
        "",
    ]
    systems_order = [
        "callstate",
        "floor",
        "langgraph",
        "langgraph_graph",
        "callstate_normal",
        "floor_normal",
        "list_append",
    ]
    present = [s for s in systems_order if any(s in v for v in res.values.values())]
    ratio_cols = [(a, b) for a, b in PAIRS if a in present and b in present]
    head = ["metric", *present, *(f"{a} / {b}" for a, b in ratio_cols)]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" + " ---: |" * (len(head) - 1)]
    for metric, by_system in res.values.items():
        cells = [f"`{metric}`"]
        for s in present:
            cells.append(fmt(statistics.median(by_system[s])) if s in by_system else "")
        for a, b in ratio_cols:
            if metric in res.no_ratio or a not in by_system or b not in by_system:
                cells.append("")
                continue
            ratios = [x / y for x, y in zip(by_system[a], by_system[b], strict=True) if y > 0]
            cells.append(f"{statistics.median(ratios):.2f}\u00d7" if ratios else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run, print, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=300, help="turns of the replayed call")
    parser.add_argument(
        "--long",
        action="store_true",
        help="a 3,000-turn call (growth); e.g. --long --only call --engines sqlite --rounds 1",
    )
    parser.add_argument(
        "--engines",
        type=lambda v: [x for x in v.split(",") if x],
        default=list(ENGINES),
        help="comma-separated subset of sqlite,postgres,redis",
    )
    parser.add_argument(
        "--resume-sizes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[100, 10_000],
        help="stored call lengths in events",
    )
    parser.add_argument("--resume-reps", type=int, default=5, help="resumes per size per round")
    parser.add_argument("--sessions", type=int, default=1000, help="concurrent sessions")
    parser.add_argument("--sustained-turns", type=int, default=10)
    parser.add_argument("--record-passes", type=int, default=3, help="passes over the call")
    parser.add_argument("--breakdown-turns", type=int, default=100)
    parser.add_argument(
        "--only",
        type=lambda v: [x for x in v.split(",") if x],
        default=list(MEASURES),
        help=f"comma-separated subset of {','.join(MEASURES)}",
    )
    parser.add_argument(
        "--systems",
        type=lambda v: [x for x in v.split(",") if x],
        default=list(SYSTEMS),
        help=f"systems of the call measure, a subset of {','.join(SYSTEMS)}",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, help="write a markdown report here")
    args = parser.parse_args(argv)
    unknown = set(args.engines) - set(ENGINES)
    if unknown or not args.engines:
        parser.error(f"--engines: unknown {sorted(unknown)}; choose from {','.join(ENGINES)}")
    for option, given, known in (
        ("--only", args.only, MEASURES),
        ("--systems", args.systems, SYSTEMS),
    ):
        if not set(given) <= set(known) or not given:
            parser.error(f"{option}: got {','.join(given)!r}; choose from {','.join(known)}")
    if args.long:
        args.turns = 3000
    if args.quick:
        args.rounds = min(args.rounds, 2)
        args.turns = min(args.turns, 16)
        args.resume_sizes = [20, 60]
        args.resume_reps = 1
        args.sessions = 10
        args.sustained_turns = 2
        args.record_passes = 1
        args.breakdown_turns = 8
    args.langgraph = langgraph_version()
    load_before = _load()
    res = asyncio.run(run(args))
    load_after = _load()
    print(f"langgraph {args.langgraph or 'absent'}", flush=True)
    emit(res)
    if args.out is not None:
        args.out.write_text(report(args, res, (load_before, load_after)))
        note(f"report written to {args.out}")


if __name__ == "__main__":
    main()
