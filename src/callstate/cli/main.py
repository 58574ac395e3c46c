"""The ``callstate`` command line: ``demo``, ``inspect SESSION``, ``sessions``.

Every subcommand takes ``--db STORE``: a SQLite file path (default ``callstate.db`` in
the current folder) or any store URL (``sqlite:///…``, ``redis://…?prefix=…``,
``postgresql://…?schema=…``), and prints with rich: coloured on a terminal, plain text
when piped.

Subcommands live in one table, :data:`COMMANDS`. To add one, write a small async
function and register it, in this module or in a module named in
:data:`COMMAND_MODULES`::

    @command("hello", "say hello", configure=lambda p: p.add_argument("name"))
    async def hello(args: argparse.Namespace, out: Console) -> int:
        out.print(f"hello {args.name}")
        return 0

``configure`` adds the subcommand's own arguments. A group (``archive list|show``)
adds nested subparsers in ``configure``, gives each ``parents=[db_parent()]`` and
``set_defaults(run=...)`` with its own runner; a nested default wins over the group's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from ..errors import CallstateError, ConfigError, SealError, SessionNotFound
from ..journal.context import build_messages
from ..journal.events import decode_event
from ..journal.sealed import open_event
from ..keeper import restore_state
from ..runtime.options import parse_secrets
from ..sealing import Sealer
from ..storage import Store, open_store
from .timeline import clock_time, messages_table, state_table, timeline_table

__all__ = [
    "COMMANDS",
    "COMMAND_MODULES",
    "Command",
    "build_parser",
    "command",
    "db_parent",
    "main",
    "make_console",
    "open_db",
    "env_sealer",
    "print_session",
    "sealed_hint",
    "store_url",
]

Runner = Callable[[argparse.Namespace, Console], Awaitable[int]]
Configure = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, runner and argument set-up."""

    name: str
    help: str
    run: Runner
    configure: Configure | None = None


#: Every subcommand, by name (``--help`` lists them alphabetically).
COMMANDS: dict[str, Command] = {}

#: Modules imported before the parser is built, so their ``@command``\ s register.
COMMAND_MODULES: list[str] = [
    "callstate.cli.demo",
    "callstate.cli.continuity_demo",  # demo scenes: token, caller id, follow-up, expiry
    "callstate.cli.archive",
    "callstate.cli.followups",
    "callstate.cli.health",
    "callstate.cli.stats",
    "callstate.web.serve",  # needs the web extra only when run
]

DEFAULT_DB = "callstate.db"


def command(
    name: str, help: str, *, configure: Configure | None = None
) -> Callable[[Runner], Runner]:
    """Register the decorated async function as subcommand ``name``."""

    def register(run: Runner) -> Runner:
        COMMANDS[name] = Command(name=name, help=help, run=run, configure=configure)
        return run

    return register


def db_parent() -> argparse.ArgumentParser:
    """A parent parser holding ``--db PATH``, for every (nested) subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="STORE",
        help=(
            "a SQLite file path or a store URL: sqlite:///FILE, "
            "redis://HOST:PORT/DB?prefix=NAME, postgresql://HOST/DB?schema=NAME "
            f"(default: {DEFAULT_DB} in the current folder)"
        ),
    )
    return parent


def make_console(*, stderr: bool = False) -> Console:
    """A console that colours a terminal and writes plain text anywhere else."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "120"))
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


def store_url(db: str) -> str:
    """The store URL for ``--db``: a URL as given, a file path (relative or absolute)
    as ``sqlite:///PATH``."""
    return db if "://" in db else f"sqlite:///{db}"


def _require_file(db: str) -> None:
    url = store_url(db)
    if not url.startswith("sqlite:///"):
        return  # a server store (or memory://): opening it says whether it is there
    path = url[len("sqlite:///") :]
    if path != ":memory:" and not Path(path).is_file():
        msg = f"no callstate database at --db {db!r}; run `callstate demo` to create one"
        raise ConfigError(msg)


async def open_db(db: str, *, must_exist: bool = True) -> Store:
    """Open the store ``db`` names: a SQLite file path or any store URL.

    Raises:
        ConfigError: ``must_exist`` and ``db`` names a SQLite file that is not there
            (reading commands never create an empty database by accident), or the
            URL's scheme is unknown.
        StorageError: the store cannot be opened (a server that does not answer).
    """
    if must_exist:
        _require_file(db)
    store = open_store(store_url(db))
    await store.open()
    return store


async def _resolve(store: Store, session: str) -> str:
    """A full session id from an id or a unique prefix of one."""
    if await store.get(session) is not None:
        return session
    matches = [r.session_id for r in await store.list_sessions(limit=100_000)]
    matches = [sid for sid in matches if sid.startswith(session)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        msg = f"session {session!r} is ambiguous: it starts {len(matches)} session ids"
        raise SessionNotFound(msg, session_id=session)
    msg = f"session {session!r} not found in the store"
    raise SessionNotFound(msg, session_id=session)


def env_sealer() -> Sealer | None:
    """What opens sealed caller data for a command: the keeper's secret, given in
    ``$CALLSTATE_SECRET`` (None when unset)."""
    secret = os.environ.get("CALLSTATE_SECRET")
    return Sealer(parse_secrets(secret)) if secret else None


def sealed_hint(exc: SealError) -> SealError:
    """``exc``, telling a command-line user how to give the secret."""
    return SealError(f"{exc}; set CALLSTATE_SECRET to the keeper's secret to read it")


async def print_session(
    store: Store, session_id: str, out: Console, sealer: Sealer | None = None
) -> None:
    """Print one session: its state, its full timeline and the model context.

    Sealed caller data is opened with ``sealer`` (default: :func:`env_sealer`).
    """
    sealer = sealer or env_sealer()
    raw = await store.read_events(session_id)
    try:
        events = [open_event(decode_event(r), sealer, session_id=session_id) for r in raw]
        state = restore_state(await store.load(session_id), sealer)
    except SealError as exc:
        raise sealed_hint(exc) from exc
    out.print(state_table(state))
    out.print(timeline_table(events, title=f"timeline of {session_id} ({len(events)} events)"))
    out.print(messages_table(build_messages(state), title="context (what a model is given)"))


def _configure_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", help="session id (or a unique prefix of one)")


@command("inspect", "print one session's timeline", configure=_configure_inspect)
async def run_inspect(args: argparse.Namespace, out: Console) -> int:
    """``callstate inspect SESSION``."""
    store = await open_db(args.db)
    try:
        await print_session(store, await _resolve(store, args.session), out)
    finally:
        await store.close()
    return 0


def _configure_sessions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=50, help="most sessions to list (default 50)")


@command("sessions", "list sessions, most recent first", configure=_configure_sessions)
async def run_sessions(args: argparse.Namespace, out: Console) -> int:
    """``callstate sessions``."""
    from rich import box
    from rich.table import Table

    store = await open_db(args.db)
    try:
        records = await store.list_sessions(limit=args.limit)
    finally:
        await store.close()
    if not records:
        out.print(Text(f"no sessions in {args.db}"))
        return 0
    title = Text(f"sessions in {args.db}")
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for name in ("session", "agent", "status", "epoch", "seq", "last interaction"):
        table.add_column(
            name, no_wrap=True, justify="right" if name in ("epoch", "seq") else "left"
        )
    for r in records:
        table.add_row(
            Text(r.session_id),
            Text(r.agent),
            r.status,
            str(r.epoch),
            str(r.seq),
            clock_time(r.last_interaction_at),
        )
    out.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="callstate",
        description="Inspect callstate sessions and watch one survive a crash.",
    )
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in sorted(COMMANDS.values(), key=lambda c: c.name):
        sub = subs.add_parser(cmd.name, help=cmd.help, description=cmd.help, parents=[db_parent()])
        if cmd.configure is not None:
            cmd.configure(sub)
        sub.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callstate`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = make_console()
    try:
        status: int = asyncio.run(args.run(args, out))
    except CallstateError as exc:
        make_console(stderr=True).print(Text.assemble(("error: ", "bold red"), str(exc)))
        return 1
    except KeyboardInterrupt:
        return 130
    return status
