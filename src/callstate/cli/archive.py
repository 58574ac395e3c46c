"""``callstate archive list | show RECORD | call SESSION | export DIR``: read the archive.

The archive is insert-only: these commands only read it. ``call`` prints a whole call,
every leg and what its follow-ups did; ``export`` writes one JSON file per leg (the
stored ``ArchiveRecord``, pretty-printed).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..archive.calls import FollowUpResult, decode_result
from ..archive.followups import MAX_LEGS
from ..archive.health import HEALTH_CLASSES, Health, with_followups
from ..archive.records import ArchiveRecord, decode_record, open_record, write_records
from ..errors import ConfigError, SealError
from ..storage import Store
from ..storage.abilities import keeps_log
from .filters import caller_tag, followup_states, parse_since
from .main import command, db_parent, env_sealer, open_db, sealed_hint
from .timeline import clock_time

__all__ = ["Listed", "archive", "listed_table", "records_table", "select_records"]


class Listed(msgspec.Struct, frozen=True, kw_only=True):
    """One archived leg as a list shows it: the record and what is stored beside it."""

    record: ArchiveRecord
    caller_hash: str | None
    legs: int = 1
    followups: list[str] = []  # the ledger states of its follow-ups

    @property
    def health(self) -> Health | None:
        """The record's health, ``failed`` when one of its follow-ups is dead or orphaned."""
        h = self.record.health
        return None if h is None else with_followups(h, self.followups)


async def select_records(
    store: Store,
    *,
    session: str | None,
    caller: str | None,
    outcome: str | None,
    health: str | None = None,
    since: float | None = None,
    limit: int,
    count_legs: bool = True,
) -> list[Listed]:
    """Archived legs matching every given filter, newest first (``caller`` is matched on
    the opened record; ``health`` counts dead or orphaned follow-ups as failed)."""
    # callers are matched on the opened record: the hash needs the secret too
    wide = caller is not None or health is not None
    rows = await store.archive_list(
        session_id=session, since=since, limit=100_000 if wide else limit
    )
    records = [(r, _decoded(r.data)) for r in rows]
    if caller is not None and any(rec.sealed is not None for _, rec in records):
        msg = "the archive holds sealed caller ids: set CALLSTATE_SECRET to filter by --caller"
        raise ConfigError(msg)
    if caller is not None:
        records = [(r, rec) for r, rec in records if rec.caller == caller]
    if outcome is not None:
        records = [(r, rec) for r, rec in records if rec.outcome == outcome]
    states = await followup_states(store)
    listed = [
        Listed(record=rec, caller_hash=r.caller_hash, followups=states.get(rec.record_id, []))
        for r, rec in records
    ]
    if health is not None:
        listed = [x for x in listed if x.health is not None and x.health.kind == health]
    listed = listed[:limit]
    if not count_legs:
        return listed
    legs: dict[str, int] = {}
    for sid in {x.record.session_id for x in listed}:
        legs[sid] = len(await store.archive_list(session_id=sid, limit=MAX_LEGS))
    return [msgspec.structs.replace(x, legs=legs[x.record.session_id]) for x in listed]


def _decoded(data: bytes) -> ArchiveRecord:
    """A stored record, its caller data opened when ``$CALLSTATE_SECRET`` is set."""
    record = decode_record(data)
    sealer = env_sealer()
    if sealer is None:
        return record  # listed without its caller: the list shows no caller anyway
    try:
        return open_record(record, sealer)
    except SealError as exc:
        raise sealed_hint(exc) from exc


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", help="only this session's calls")
    p.add_argument("--caller", help="only calls from this caller id")
    p.add_argument(
        "--outcome",
        choices=["completed", "recovered", "superseded", "abandoned", "failed"],
        help="only calls with this outcome",
    )
    p.add_argument(
        "--health", choices=list(HEALTH_CLASSES), help="only calls with this health class"
    )
    p.add_argument("--since", help="only calls that ended this long ago or later (1h, 30m, 2d)")
    p.add_argument("--limit", type=int, default=50, help="most records (default 50)")


def records_table(records: list[ArchiveRecord], *, title: str) -> Table:
    """One row per archived call."""
    return listed_table([Listed(record=r, caller_hash=None) for r in records], title=title)


def listed_table(listed: list[Listed], *, title: str, full: bool = False) -> Table:
    """One row per archived call; ``full`` adds health, caller (its hash), legs and
    follow-up columns."""
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    names = ["record", "outcome"]
    if full:
        names += ["health", "caller", "legs"]
    names += ["agent", "via", "ended", "duration", "turns", "tools"]
    if full:
        names.append("follow-ups")
    for name in names:
        right = name in ("duration", "turns", "tools", "legs")
        table.add_column(name, no_wrap=True, justify="right" if right else "left")
    for x in listed:
        r = x.record
        row = [r.record_id, r.outcome]
        if full:
            h = x.health
            row += [h.kind if h else "-", caller_tag(x.caller_hash), str(x.legs)]
        row += [
            r.agent,
            r.via,
            clock_time(r.timings.ended_at),
            f"{r.timings.duration_s:.0f}s",
            str(sum(1 for i in r.transcript if i.kind == "user")),
            str(len(r.tools)),
        ]
        if full:
            row.append(",".join(x.followups) or "-")
        table.add_row(*row)
    return table


def record_detail(r: ArchiveRecord) -> list[Table]:
    """A record's facts, transcript, tool ledger and recovery events."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", justify="right")
    facts.add_column(overflow="fold")
    t = r.timings
    for name, value in (
        ("record", r.record_id),
        ("outcome", r.outcome),
        ("health", _health_text(r.health)),
        ("agent", r.agent),
        ("caller", r.caller or ("(sealed: set CALLSTATE_SECRET)" if r.sealed else "-")),
        ("began by", f"{r.via} (gap {t.gap_s:.1f}s)" if r.via != "start" else "start"),
        ("ended", f"{clock_time(t.ended_at)} ({r.end_reason or 'no end: ' + r.outcome})"),
        ("duration", f"{t.duration_s:.1f}s, link down {t.link_down_s:.1f}s"),
        ("journal", f"seq {r.first_seq}..{r.last_seq}"),
    ):
        facts.add_row(name, value)
    transcript = Table(box=box.SIMPLE_HEAD, title="transcript", title_justify="left")
    transcript.add_column("at", no_wrap=True)
    transcript.add_column("who", no_wrap=True)
    transcript.add_column("text", overflow="fold")
    for item in r.transcript:
        text = item.text if item.kind != "call" else f"tool call {item.id}"
        if item.interrupted:
            text += f"  [cut off; unspoken “{item.unspoken}”]"
        transcript.add_row(clock_time(item.at), item.kind, text)
    tools = Table(box=box.SIMPLE_HEAD, title="tool ledger", title_justify="left")
    for name in ("call", "tool", "effect", "status", "delivery"):
        tools.add_column(name, no_wrap=True)
    for c in r.tools:
        tools.add_row(c.call_id, c.name, c.effect, c.status, c.delivery or "-")
    recovery = Table(box=box.SIMPLE_HEAD, title="recovery events", title_justify="left")
    for name in ("at", "kind", "call", "data"):
        recovery.add_column(name, overflow="fold")
    for e in r.recovery:
        data = " ".join(f"{k}={v}" for k, v in e.data.items() if k != "seq")
        recovery.add_row(clock_time(e.at), e.kind, e.call_id or "", data)
    return [facts, transcript, tools, recovery]


def _health_text(h: Health | None) -> str:
    if h is None:
        return "- (written before health classes)"
    counted = [
        f"{n} {what}"
        for n, what in ((h.failed_tools, "failed tool call(s)"), (h.recoveries, "recovery(ies)"))
        if n
    ]
    return " ".join([h.kind, f"({h.cause})" if h.cause else "", ", ".join(counted)]).strip()


async def _matching(args: argparse.Namespace) -> list[Listed]:
    """The records ``list`` and ``export`` select with ``--session/--caller/--outcome/
    --health/--since/--limit``."""
    since = parse_since(args.since, now=time.time())
    store = await open_db(args.db)
    try:
        return await select_records(
            store,
            session=args.session,
            caller=args.caller,
            outcome=args.outcome,
            health=args.health,
            since=since,
            limit=args.limit,
        )
    finally:
        await store.close()


async def archive_list(args: argparse.Namespace, out: Console) -> int:
    """``callstate archive list``."""
    listed = await _matching(args)
    if not listed:
        out.print(f"no archived calls in {args.db}")
        return 0
    out.print(listed_table(listed, title=f"archived calls in {args.db}, newest first", full=True))
    return 0


async def archive_show(args: argparse.Namespace, out: Console) -> int:
    """``callstate archive show RECORD``: a record id or a unique prefix of one."""
    store = await open_db(args.db)
    try:
        row = await store.archive_get(args.record)
        if row is None:
            rows = [
                r
                for r in await store.archive_list(limit=100_000)
                if r.record_id.startswith(args.record)
            ]
            if len(rows) != 1:
                how = "matches no record" if not rows else f"matches {len(rows)} records"
                msg = f"archive record {args.record!r} {how}; see `callstate archive list`"
                raise ConfigError(msg)
            row = rows[0]
    finally:
        await store.close()
    for part in record_detail(_decoded(row.data)):
        out.print(part)
    return 0


def call_tables(legs: list[ArchiveRecord], results: list[FollowUpResult]) -> list[Table]:
    """A whole call: its legs, the conversation across them, what its follow-ups did."""
    title = f"call {legs[0].session_id}: {len(legs)} leg(s), oldest first"
    transcript = Table(box=box.SIMPLE_HEAD, title="transcript", title_justify="left")
    for name in ("leg", "at", "who", "text"):
        transcript.add_column(name, no_wrap=name != "text", overflow="fold")
    for r in legs:
        for item in r.transcript:
            text = item.text if item.kind != "call" else f"tool call {item.id}"
            transcript.add_row(str(r.epoch), clock_time(item.at), item.kind, Text(text))
    runs = Table(box=box.SIMPLE_HEAD, title="follow-ups run", title_justify="left")
    for name in ("leg", "callback", "idempotency key", "ran", "result"):
        runs.add_column(name, no_wrap=name != "result", overflow="fold")
    for f in results:
        shown = repr(f.result) if f.ok else f"failed: {f.error}"
        runs.add_row(str(f.leg), f.name, f.idempotency_key, clock_time(f.ran_at), Text(shown))
    return [records_table(legs, title=title), transcript, runs]


async def archive_call(args: argparse.Namespace, out: Console) -> int:
    """``callstate archive call SESSION``: every leg of one call and its follow-ups."""
    store = await open_db(args.db)
    try:
        rows = await store.archive_list(session_id=args.session, limit=MAX_LEGS)
        runs = await store.followup_runs(args.session) if keeps_log(store) else []
    finally:
        await store.close()
    if not rows:
        msg = f"session {args.session!r} has no archived leg; see `callstate archive list`"
        raise ConfigError(msg)
    legs = sorted((_decoded(r.data) for r in rows), key=lambda r: (r.epoch, r.first_seq))
    results = sorted((decode_result(r.data) for r in runs), key=lambda f: (f.leg, f.ran_at))
    for part in call_tables(legs, results):
        out.print(part)
    return 0


async def archive_export(args: argparse.Namespace, out: Console) -> int:
    """``callstate archive export DIR``: one JSON file per call."""
    records = [x.record for x in await _matching(args)]
    paths = await asyncio.to_thread(write_records, Path(args.dir), records)
    out.print(f"exported {len(paths)} call record(s) to {args.dir}")
    for p in paths:
        out.print(Text(f"  {p}", style="dim"))
    return 0


def _configure(p: argparse.ArgumentParser) -> None:
    subs = p.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    ls = subs.add_parser("list", help="list archived calls", parents=[db_parent()])
    _filters(ls)
    ls.set_defaults(run=archive_list)
    show = subs.add_parser("show", help="print one archived call", parents=[db_parent()])
    show.add_argument("record", help="record id (session:epoch) or a unique prefix")
    show.set_defaults(run=archive_show)
    call = subs.add_parser(
        "call", help="print a whole call: every leg and its follow-ups", parents=[db_parent()]
    )
    call.add_argument("session", help="session id of the call")
    call.set_defaults(run=archive_call)
    export = subs.add_parser(
        "export", help="write one JSON file per call into DIR", parents=[db_parent()]
    )
    export.add_argument("dir", help="directory to write into (created if missing)")
    _filters(export)
    export.set_defaults(limit=100_000, run=archive_export)  # exports take every match


@command("archive", "list, show or export archived calls", configure=_configure)
async def archive(args: argparse.Namespace, out: Console) -> int:
    """``callstate archive``: the group; its actions set their own runner."""
    return await archive_list(args, out)  # pragma: no cover - an action is required
