"""``callstate demo``: a scripted call that survives a real crash of its agent process.

The first half of the call runs in a child process (``python -m callstate demo
--child``): a user turn, an agent utterance cut by a barge-in, the caller's follow-up
question, then ``await flush()``. The child records one more event it never flushes
and is killed with SIGKILL. This process then resumes the session by id, shows what
was restored next to what the child had made durable, and finishes the call.

The demo is a list of scenes run in order (:data:`SCENES`). A scene is an async
function taking the shared :class:`DemoRun`; register more with ``@scene``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..keeper import Keeper
from ..session import Session
from .main import command, print_session, store_url
from .timeline import messages_table

__all__ = ["SCENES", "ChildReport", "DemoRun", "scene"]

_T = TypeVar("_T")

DEMO_SECRET = b"callstate-demo-secret-not-for-production"
CALLER = "+15551234567"
USER_1 = "Hi, I need to move my dinner booking tonight from seven thirty to eight."
HEARD = "Sure. I can see your booking for four at seven thirty;"
UNSPOKEN = "let me move it to eight and text you a confirmation."
USER_2 = "Sorry, before you do that: is the window table still free at eight?"
UNFLUSHED = "And could you also"
AGENT_2 = (
    "Yes, the window table is free at eight. I've moved your booking there "
    "and I'm texting you the confirmation now."
)
USER_3 = "Perfect, thank you. Bye!"
CHILD_TIMEOUT_S = 60.0


class ChildReport(msgspec.Struct, kw_only=True):
    """What the agent process had made durable when it was killed."""

    pid: int
    session_id: str
    epoch: int
    seq: int
    context: list[dict[str, Any]]
    heard: str
    unspoken: str
    unflushed: str


@dataclass
class DemoRun:
    """State shared by the scenes of one demo run."""

    args: argparse.Namespace
    out: Console
    session_id: str
    keeper: Keeper | None = None
    session: Session | None = None
    child: ChildReport | None = None
    problems: list[str] = field(default_factory=list)
    step: int = 0

    @property
    def db(self) -> str:
        return str(self.args.db)

    def heading(self, title: str) -> None:
        """Print the next numbered step's heading."""
        self.step += 1
        self.out.print()
        self.out.rule(f"[bold]{self.step} · {title}", align="left")

    def say(self, who: str, text: str, style: str = "") -> None:
        """Print one line of the call's story, wrapped under its text column."""
        grid = Table.grid(padding=(0, 2))
        grid.add_column(justify="right", min_width=10, no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row(Text(who, style=style or "bold"), Text(text))
        self.out.print(grid)


Scene = Callable[[DemoRun], Awaitable[None]]

#: The demo's scenes, in the order they run.
SCENES: list[Scene] = []


def scene(fn: Scene) -> Scene:
    """Append ``fn`` to :data:`SCENES`."""
    SCENES.append(fn)
    return fn


class DemoFailed(Exception):
    """A scene could not go on (e.g. the agent process died before flushing)."""


def _need(value: _T | None, what: str) -> _T:
    """``value``, or stop the demo: an earlier scene did not produce it."""
    if value is None:
        msg = f"{what} is missing; an earlier scene did not run"
        raise DemoFailed(msg)
    return value


# -- the agent process that crashes ----------------------------------------------------


def _emit(kind: str, **data: Any) -> None:
    sys.stdout.buffer.write(msgspec.json.encode({"kind": kind, **data}) + b"\n")
    sys.stdout.buffer.flush()


async def run_child(args: argparse.Namespace) -> int:
    """The agent process: first half of the call, a flush, then wait to be killed."""
    async with Keeper(store_url(args.db), secret=DEMO_SECRET) as keeper:
        s = await keeper.start(caller=CALLER, agent="booking", session_id=args.session_id)
        _emit("say", who="session", text=f"started {s.id} at epoch {s.state.epoch}")
        s.user_said(USER_1)
        _emit("say", who="caller", text=USER_1)
        uid = s.agent_started(f"{HEARD} {UNSPOKEN}")
        _emit("say", who="agent", text=f"{HEARD} {UNSPOKEN}")
        s.agent_progress(uid, spoken_text=HEARD.split(";")[0][:28])
        s.agent_progress(uid, spoken_text=HEARD)
        s.interrupt(heard_text=HEARD, audio_end_ms=2350)  # the caller talks over the agent
        item = next(i for i in s.state.items if i.id == uid)
        _emit("say", who="barge-in", text=f"the caller talks over the agent after “{item.text}”")
        s.user_said(USER_2)
        _emit("say", who="caller", text=USER_2)
        await s.flush()
        report = ChildReport(
            pid=os.getpid(),
            session_id=s.id,
            epoch=s.state.epoch,
            seq=s.durable_seq,
            context=s.context(),
            heard=item.text,
            unspoken=item.unspoken,
            unflushed=UNFLUSHED,
        )
        _emit("flushed", report=msgspec.to_builtins(report))
        s.user_partial(UNFLUSHED)
        _emit("unflushed", text=UNFLUSHED)
        # Block the event loop on purpose: the flusher must not get to write the partial
        # before the SIGKILL lands. EOF means the parent went away without killing us.
        sys.stdin.buffer.read()
        os._exit(3)
    return 3  # pragma: no cover - the process never gets here


@scene
async def crash(run: DemoRun) -> None:
    """Run the first half in a child process, then SIGKILL it."""
    run.heading("an agent process takes the call")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callstate",
        "demo",
        "--child",
        "--db",
        run.db,
        "--session-id",
        run.session_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if proc.stdout is None or proc.stderr is None:
        raise DemoFailed("the agent process has no pipes")
    unflushed = False
    try:
        while not unflushed:
            line = await asyncio.wait_for(proc.stdout.readline(), CHILD_TIMEOUT_S)
            if not line:
                break
            msg = msgspec.json.decode(line)
            if msg["kind"] == "say":
                run.say(msg["who"], msg["text"])
            elif msg["kind"] == "flushed":
                run.child = msgspec.convert(msg["report"], ChildReport)
                run.say("flush()", f"durable up to seq {run.child.seq}, epoch {run.child.epoch}")
            elif msg["kind"] == "unflushed":
                run.say("caller", f"“{msg['text']}…” (recorded after the flush, not flushed)")
                unflushed = True
    except TimeoutError:
        pass
    if run.child is None or not unflushed:
        proc.kill()
        await proc.wait()
        err = (await proc.stderr.read()).decode(errors="replace").strip()
        raise DemoFailed(f"the agent process stopped before flushing:\n{err}")
    run.heading("the agent process crashes")
    proc.send_signal(signal.SIGKILL)
    code = await proc.wait()
    run.say("SIGKILL", f"agent process {proc.pid} killed (exit status {code})", "bold red")


def _compare(run: DemoRun, child: ChildReport, s: Session) -> Table:
    """Side by side: what the child had flushed vs what the resume restored."""
    item = next((i for i in s.state.items if i.interrupted), None)
    heard, unspoken = (item.text, item.unspoken) if item is not None else ("", "")
    context = s.context()
    durable = [e for e in context if e.get("role") != "system"]
    rows = [
        ("epoch", str(child.epoch), str(s.state.epoch), "+1: this process owns the call now"),
        (
            "seq",
            str(child.seq),
            f"{s.state.seq - 1} + session.resumed = {s.state.seq}",
            "every acknowledged event is back",
        ),
        ("context messages", str(len(child.context)), str(len(durable)), ""),
        ("heard (in context)", f"“{child.heard}”", f"“{heard}”", ""),
        ("unspoken (kept aside)", f"“{child.unspoken}”", f"“{unspoken}”", ""),
        (
            "unflushed partial",
            f"“{child.unflushed}…”",
            f"“{s.state.partial}”" if s.state.partial else "(not restored)",
            "never acknowledged by flush()",
        ),
    ]
    checks = [
        s.state.epoch == child.epoch + 1,
        s.state.seq - 1 == child.seq,
        durable == child.context,
        (heard, unspoken) == (child.heard, child.unspoken),
        not s.state.partial,
    ]
    if not all(checks):
        run.problems.append("the restored session differs from what the agent had flushed")
    table = Table(title="what was restored", title_justify="left")
    for name in ("", "agent process had flushed", "resumed session has", "note"):
        table.add_column(name, overflow="fold")
    for name, before, after, note in rows:
        table.add_row(name, Text(before), Text(after), Text(note, style="dim"))
    return table


@scene
async def resume(run: DemoRun) -> None:
    """Resume the session by id in this process and show what came back."""
    child = _need(run.child, "the agent process's report")
    run.heading("a new process resumes the call by session id")
    run.keeper = Keeper(store_url(run.db), secret=DEMO_SECRET)
    await run.keeper.open()
    run.session = s = await run.keeper.resume(run.session_id)
    run.say(
        "resume", f"keeper.resume({run.session_id!r}) → epoch {s.state.epoch}, seq {s.state.seq}"
    )
    run.out.print(_compare(run, child, s))
    run.out.print(messages_table(s.context(), title="restored context (what the model is given)"))
    note = getattr(s.recovery, "resume_note", None)
    if note:
        run.say("note", str(note))


@scene
async def finish(run: DemoRun) -> None:
    """The resumed agent answers the question the caller asked before the crash."""
    s = _need(run.session, "the resumed session")
    run.heading("the call goes on where it stopped")
    s.connection_restored()  # the caller's audio is flowing again: the agent may speak
    uid = s.agent_started(AGENT_2)
    s.agent_progress(uid, spoken_text=AGENT_2.split(".")[0] + ".")
    s.agent_finished(uid)
    run.say("agent", AGENT_2)
    s.user_said(USER_3)
    run.say("caller", USER_3)
    await s.end(reason="caller_hangup")
    run.say("session", f"ended at seq {s.state.seq} (caller hung up)")


@scene
async def timeline(run: DemoRun) -> None:
    """Print the whole journal, both epochs, as the store has it."""
    keeper = _need(run.keeper, "the resuming keeper")
    run.heading("the whole call, as stored")
    await print_session(keeper.store, run.session_id, run.out, keeper.host.sealer)
    again = f"CALLSTATE_SECRET={DEMO_SECRET.decode()} callstate inspect {run.session_id}"
    run.out.print(Text(f"Look again with: {again} --db {run.db}"))


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--session-id", help=argparse.SUPPRESS)


@command("demo", "play a call that survives a barge-in and a crash", configure=_configure_demo)
async def demo(args: argparse.Namespace, out: Console) -> int:
    """``callstate demo``."""
    if args.child:
        return await run_child(args)
    run = DemoRun(args=args, out=out, session_id=args.session_id or f"demo-{uuid.uuid4().hex[:8]}")
    out.print(
        Text.assemble(
            ("callstate demo", "bold"),
            f" · database {args.db} · session {run.session_id}",
        )
    )
    try:
        for step in SCENES:
            await step(run)
    except DemoFailed as exc:
        run.problems.append(str(exc))
    finally:
        if run.keeper is not None:
            await run.keeper.close()
    for problem in run.problems:
        out.print(Text.assemble(("problem: ", "bold red"), problem))
    return 1 if run.problems else 0
