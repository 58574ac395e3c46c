"""``callstate stats [--since 1h]``: fleet figures read from the store.

What every worker sharing the store archived in the window, counted by the store's
index (``keeper.fleet_stats``): legs per health class, the recovered-call rate, the
in-doubt rate, and time-to-recover and follow-up lag percentiles.
"""

from __future__ import annotations

import argparse
import time

from rich import box
from rich.console import Console
from rich.table import Table

from ..archive.fleet import FleetStats, Percentiles, fleet_stats
from .filters import parse_since
from .main import command, open_db
from .timeline import clock_time

__all__ = ["stats", "stats_tables"]


def _seconds(p: Percentiles | None) -> list[str]:
    if p is None:
        return ["0", "-", "-", "-", "-"]
    return [str(p.count), *(f"{v:.2f}s" for v in (p.p50, p.p90, p.p99, p.max))]


def stats_tables(s: FleetStats, *, title: str) -> list[Table]:
    """The figures as three tables: rates, health classes, distributions."""
    rates = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for name in ("legs", "calls", "recovered rate", "in-doubt rate"):
        rates.add_column(name, justify="right", no_wrap=True)
    rates.add_row(
        str(s.legs), str(s.calls), f"{100 * s.recovered_rate:.1f}%", f"{100 * s.in_doubt_rate:.1f}%"
    )
    health = Table(box=box.SIMPLE_HEAD, title="legs per health class", title_justify="left")
    health.add_column("health", no_wrap=True)
    health.add_column("legs", justify="right")
    for kind, n in sorted(s.health.items(), key=lambda kv: -kv[1]):
        health.add_row(kind, str(n))
    spread = Table(box=box.SIMPLE_HEAD, title="seconds", title_justify="left")
    for name in ("figure", "count", "p50", "p90", "p99", "max"):
        spread.add_column(name, justify="left" if name == "figure" else "right", no_wrap=True)
    spread.add_row("time to recover", *_seconds(s.time_to_recover))
    spread.add_row("follow-up lag", *_seconds(s.followup_lag))
    return [rates, health, spread]


async def run_stats(args: argparse.Namespace, out: Console) -> int:
    """``callstate stats``."""
    now = time.time()
    since = parse_since(args.since, now=now)
    store = await open_db(args.db)
    try:
        figures = await fleet_stats(store, since=since, until=now)
    finally:
        await store.close()
    when = f"since {clock_time(since)}" if since is not None else "all time"
    for table in stats_tables(figures, title=f"fleet figures of {args.db}, {when}"):
        out.print(table)
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="only legs closed this long ago or later (1h, 30m, 2d)")


@command("stats", "fleet figures read from the store (every worker)", configure=_configure)
async def stats(args: argparse.Namespace, out: Console) -> int:
    """``callstate stats``: see the module docstring."""
    return await run_stats(args, out)
