"""``callstate health [--since 1h]``: archived calls counted per health class, and the
worst of them.

A leg's class comes from its record (see :mod:`callstate.archive.health`); a dead or
orphaned follow-up makes it ``failed``. The worst calls are the ``failed``,
``worker_lost`` and ``caller_never_returned`` ones, worst class first, newest first
within a class.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from rich import box
from rich.console import Console
from rich.table import Table

from ..archive.health import HEALTH_CLASSES
from .archive import Listed, listed_table, select_records
from .filters import parse_since
from .main import command, open_db
from .timeline import clock_time

__all__ = ["WORST", "health", "worst_calls"]

#: the classes ``callstate health`` lists calls of, worst first
WORST = ("failed", "worker_lost", "caller_never_returned")
_SCAN = 1_000_000


def worst_calls(listed: list[Listed], limit: int) -> list[Listed]:
    """The ``limit`` worst legs: by class (worst first), then newest first."""
    bad = [x for x in listed if x.health is not None and x.health.kind in WORST]
    rank = {kind: i for i, kind in enumerate(WORST)}
    bad.sort(key=lambda x: -x.record.timings.ended_at)
    bad.sort(key=lambda x: rank[x.health.kind] if x.health else len(WORST))
    return bad[:limit]


def counts_table(listed: list[Listed], *, title: str) -> Table:
    """Legs per health class, with each class's share."""
    counts = Counter(x.health.kind if x.health else "-" for x in listed)
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for name in ("health", "legs", "share"):
        table.add_column(name, no_wrap=True, justify="left" if name == "health" else "right")
    total = len(listed) or 1
    for kind in (*HEALTH_CLASSES, "-"):
        n = counts.get(kind, 0)
        if n or kind != "-":
            table.add_row(kind, str(n), f"{100.0 * n / total:.1f}%")
    return table


async def run_health(args: argparse.Namespace, out: Console) -> int:
    """``callstate health``."""
    now = time.time()
    since = parse_since(args.since, now=now)
    store = await open_db(args.db)
    try:
        listed = await select_records(
            store,
            session=None,
            caller=None,
            outcome=None,
            since=since,
            limit=_SCAN,
            count_legs=False,
        )
        worst = worst_calls(listed, args.worst)
        legs = {
            sid: len(await store.archive_list(session_id=sid, limit=1_000))
            for sid in {x.record.session_id for x in worst}
        }
    finally:
        await store.close()
    when = f"since {clock_time(since)}" if since is not None else "all time"
    out.print(
        counts_table(listed, title=f"health of {len(listed)} call leg(s) in {args.db}, {when}")
    )
    failed = [x.health for x in listed if x.health is not None and x.health.kind == "failed"]
    if failed:
        tools = sum(h.failed_tools for h in failed)
        followups = sum(h.failed_followups for h in failed)
        out.print(f"failed: {tools} failed tool call(s), {followups} dead or orphaned follow-up(s)")
    if not worst:
        out.print("no failed, worker_lost or caller_never_returned calls")
        return 0
    shown = [
        Listed(
            record=x.record,
            caller_hash=x.caller_hash,
            legs=legs[x.record.session_id],
            followups=x.followups,
        )
        for x in worst
    ]
    out.print(listed_table(shown, title=f"worst {len(shown)} call leg(s)", full=True))
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="only calls that ended this long ago or later (1h, 30m, 2d)")
    p.add_argument("--worst", type=int, default=10, help="worst calls to list (default 10)")


@command("health", "archived calls per health class, and the worst ones", configure=_configure)
async def health(args: argparse.Namespace, out: Console) -> int:
    """``callstate health``: see the module docstring."""
    return await run_health(args, out)
