"""``callstate followups list | show ID | retry ID``: the follow-up ledger.

Each follow-up is one entry: its state (pending, running, succeeded, retrying, dead,
orphaned, cancelled), attempts and last error. ``retry`` makes a dead, orphaned or
retrying follow-up due now; the next sweep of a keeper that registered its callback
runs it.
"""

from __future__ import annotations

import argparse
import time

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, ConflictError
from ..storage import Store
from ..storage.abilities import keeps_ledger
from ..storage.base import FollowUp, FollowUpLedger
from .main import command, db_parent, open_db
from .timeline import clock_time

__all__ = ["followups"]

STATES = ("pending", "running", "succeeded", "retrying", "dead", "orphaned", "cancelled")


class _Payload(msgspec.Struct, kw_only=True):
    record_id: str = ""
    name: str = ""


def _payload(f: FollowUp) -> _Payload:
    try:
        return msgspec.json.decode(f.payload, type=_Payload)
    except msgspec.DecodeError:
        return _Payload(name="(unreadable)")


def _ledger(store: Store, db: str) -> FollowUpLedger:
    if not keeps_ledger(store):
        msg = f"the store at --db {db!r} keeps no follow-up ledger"
        raise ConfigError(msg)
    return store


async def _one(ledger: FollowUpLedger, wanted: str) -> FollowUp:
    """A follow-up by id or unique prefix of one."""
    f = await ledger.followup_get(wanted)
    if f is not None:
        return f
    found = [
        g for g in await ledger.followup_list(limit=100_000) if g.followup_id.startswith(wanted)
    ]
    if len(found) != 1:
        how = "matches no follow-up" if not found else f"matches {len(found)} follow-ups"
        msg = f"follow-up {wanted!r} {how}; see `callstate followups list`"
        raise ConfigError(msg)
    return found[0]


def ledger_table(rows: list[FollowUp], *, title: str) -> Table:
    """One row per follow-up."""
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for name in ("follow-up", "callback", "state", "attempts", "due", "last error"):
        table.add_column(name, no_wrap=name != "last error", overflow="fold")
    for f in rows:
        p = _payload(f)
        table.add_row(
            f.followup_id,
            p.name,
            f.state,
            str(f.attempts),
            clock_time(f.due_at),
            f.last_error or "",
        )
    return table


def ledger_detail(f: FollowUp) -> Table:
    """One follow-up's ledger entry."""
    p = _payload(f)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", justify="right")
    facts.add_column(overflow="fold")
    for name, value in (
        ("follow-up", f.followup_id),
        ("callback", p.name),
        ("record", p.record_id),
        ("session", f.session_id),
        ("state", f.state),
        ("attempts", str(f.attempts)),
        ("due", clock_time(f.due_at)),
        ("updated", clock_time(f.updated_at) if f.updated_at else "-"),
        ("claimed by", f.claimed_by or "-"),
        ("last error", f.last_error or "-"),
    ):
        facts.add_row(name, value)
    return facts


async def followups_list(args: argparse.Namespace, out: Console) -> int:
    """``callstate followups list``."""
    store = await open_db(args.db)
    try:
        rows = await _ledger(store, args.db).followup_list(limit=100_000)
    finally:
        await store.close()
    if args.state is not None:
        rows = [f for f in rows if f.state == args.state]
    rows = rows[: args.limit]
    if not rows:
        out.print(f"no follow-ups in {args.db}")
        return 0
    out.print(ledger_table(rows, title=f"follow-ups in {args.db}, latest due first"))
    return 0


async def followups_show(args: argparse.Namespace, out: Console) -> int:
    """``callstate followups show ID``."""
    store = await open_db(args.db)
    try:
        f = await _one(_ledger(store, args.db), args.id)
    finally:
        await store.close()
    out.print(ledger_detail(f))
    return 0


async def followups_retry(args: argparse.Namespace, out: Console) -> int:
    """``callstate followups retry ID``: due now, its attempts kept."""
    store = await open_db(args.db)
    try:
        ledger = _ledger(store, args.db)
        f = await _one(ledger, args.id)
        if not await ledger.followup_retry(f.followup_id, time.time()):
            msg = (
                f"follow-up {f.followup_id!r} is {f.state}: only a dead, orphaned or "
                "retrying follow-up can be retried"
            )
            raise ConflictError(msg)
    finally:
        await store.close()
    out.print(f"follow-up {f.followup_id} is due now (was {f.state}, {f.attempts} attempts)")
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    subs = p.add_subparsers(dest="followups_command", metavar="ACTION", required=True)
    ls = subs.add_parser("list", help="list follow-ups", parents=[db_parent()])
    ls.add_argument("--state", choices=STATES, help="only follow-ups in this state")
    ls.add_argument("--limit", type=int, default=50, help="most follow-ups (default 50)")
    ls.set_defaults(run=followups_list)
    show = subs.add_parser("show", help="print one follow-up", parents=[db_parent()])
    show.add_argument("id", help="follow-up id or a unique prefix")
    show.set_defaults(run=followups_show)
    retry = subs.add_parser(
        "retry", help="run a dead or orphaned follow-up again", parents=[db_parent()]
    )
    retry.add_argument("id", help="follow-up id or a unique prefix")
    retry.set_defaults(run=followups_retry)


@command("followups", "list, show or retry post-call follow-ups", configure=_configure)
async def followups(args: argparse.Namespace, out: Console) -> int:
    """``callstate followups``: the group; its actions set their own runner."""
    return await followups_list(args, out)  # pragma: no cover - an action is required
