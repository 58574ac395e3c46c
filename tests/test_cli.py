"""The ``callstate`` command line, run as a real subprocess on real SQLite files."""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

import callstate
from callstate import cli
from callstate.cli.demo import DEMO_SECRET, HEARD, UNFLUSHED, UNSPOKEN, USER_1, USER_2
from callstate.journal import events as ev
from callstate.journal.sealed import open_event
from callstate.keeper import restore_state
from callstate.sealing import Sealer
from callstate.testing import FakeClock

_COLOUR_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS")


def _env() -> dict[str, str]:
    """The test's environment without variables that force or forbid colour."""
    return {k: v for k, v in os.environ.items() if k not in _COLOUR_ENV}


def run_cli(*args: str, cwd: Path, secret: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m callstate ARGS`` with stdout and stderr piped (and, unless told
    otherwise, the demo's secret in CALLSTATE_SECRET, so sealed callers open)."""
    env = _env()
    env.pop("CALLSTATE_SECRET", None)
    if secret:
        env["CALLSTATE_SECRET"] = DEMO_SECRET.decode()
    return subprocess.run(
        [sys.executable, "-m", "callstate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Demo:
    """One demo run shared by the tests that read its output and its database."""

    def __init__(self, folder: Path, result: subprocess.CompletedProcess[str]) -> None:
        self.folder = folder
        self.db = folder / "demo.db"
        self.result = result
        line = next(x for x in result.stdout.splitlines() if "callstate demo" in x)
        self.session_id = line.rsplit("session ", 1)[1].strip()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("demo")
    return Demo(folder, run_cli("demo", "--db", "demo.db", cwd=folder))


async def _stored(db: Path, session_id: str) -> tuple[callstate.SessionState, list[ev.Event]]:
    store = callstate.open_store(f"sqlite:///{db}")
    await store.open()
    try:
        sealer = Sealer([DEMO_SECRET])
        state = restore_state(await store.load(session_id), sealer)
        raw = await store.read_events(session_id)
        events = [open_event(ev.decode_event(r), sealer, session_id=session_id) for r in raw]
    finally:
        await store.close()
    return state, events


def test_demo_exits_zero_and_reports_no_problem(demo: Demo) -> None:
    """The demo runs to the end, exit status 0, with nothing reported as differing."""
    assert 0 == demo.result.returncode, demo.result.stderr
    assert "problem:" not in demo.result.stdout


def test_demo_kills_the_agent_process_with_sigkill(demo: Demo) -> None:
    """The first half runs in a child process that dies by SIGKILL (exit status -9)."""
    assert "SIGKILL" in demo.result.stdout
    assert "(exit status -9)" in demo.result.stdout


async def test_demo_restores_exactly_what_the_child_flushed(demo: Demo) -> None:
    """The store holds the child's acknowledged events, then a resume at epoch 2, not the
    unflushed partial."""
    state, events = await _stored(demo.db, demo.session_id)
    tags = [e.__struct_config__.tag for e in events]
    first_resume = tags.index("session.resumed")
    assert [
        "session.started",
        "user.turn",
        "agent.started",
        "agent.progress",
        "agent.progress",
        "agent.interrupted",
        "user.turn",
    ] == tags[:first_resume]
    assert "user.partial" not in tags
    resumed = events[first_resume]
    assert isinstance(resumed, ev.SessionResumed)
    assert 2 == resumed.epoch
    assert 2 == state.epoch
    assert "ended" == state.status
    cut = next(i for i in state.items if i.interrupted)
    assert (HEARD, UNSPOKEN) == (cut.text.strip(), cut.unspoken.strip())


def test_demo_shows_heard_unspoken_and_the_lost_partial(demo: Demo) -> None:
    """The restore table shows epoch, seq, heard vs unspoken text and the unflushed partial."""
    out = demo.result.stdout
    assert "what was restored" in out
    assert "7 + session.resumed = 8" in out
    assert UNSPOKEN.split()[0] in out
    assert "kept aside" in out
    assert f"“{UNFLUSHED}…”" in out
    assert "(not restored)" in out
    assert USER_1 in out
    assert USER_2 in out


def test_demo_output_is_plain_text_when_piped(demo: Demo) -> None:
    """With stdout a pipe, no ANSI escape codes are written."""
    assert "\x1b[" not in demo.result.stdout
    assert "\x1b[" not in demo.result.stderr


def test_demo_uses_callstate_db_in_the_current_folder_by_default(tmp_path: Path) -> None:
    """Without --db the demo writes ./callstate.db."""
    result = run_cli("demo", cwd=tmp_path)
    assert 0 == result.returncode, result.stderr
    assert (tmp_path / "callstate.db").is_file()


def test_output_is_coloured_on_a_terminal(demo: Demo) -> None:
    """On a terminal (a pty), the same command writes ANSI colour codes."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "callstate", "sessions", "--db", str(demo.db)],
        stdout=follower,
        stderr=follower,
        env={**_env(), "TERM": "xterm-256color"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty reports EIO once the child closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert 0 == proc.wait(timeout=60)
    out = b"".join(chunks).decode()
    assert "\x1b[" in out
    assert demo.session_id in out


def test_inspect_prints_the_session_timeline(demo: Demo) -> None:
    """``inspect SESSION`` prints every event of both epochs in order, and the context."""
    result = run_cli("inspect", demo.session_id, "--db", "demo.db", cwd=demo.folder)
    assert 0 == result.returncode, result.stderr
    out = result.stdout
    order = ["session.started", "agent.interrupted", "session.resumed", "session.ended"]
    positions = [out.index(tag) for tag in order]
    assert sorted(positions) == positions
    assert f"timeline of {demo.session_id} (14 events)" in out  # link.restored after resume
    assert "context (what a model is given)" in out
    assert "\x1b[" not in out


def test_inspect_accepts_a_unique_prefix(demo: Demo) -> None:
    """A unique prefix of a session id is enough."""
    result = run_cli("inspect", demo.session_id[:8], "--db", "demo.db", cwd=demo.folder)
    assert 0 == result.returncode, result.stderr
    assert f"timeline of {demo.session_id}" in result.stdout


def test_inspect_without_the_secret_says_to_set_it(demo: Demo) -> None:
    """Without CALLSTATE_SECRET, inspecting a session whose caller is sealed says to set it."""
    result = run_cli("inspect", demo.session_id, "--db", "demo.db", cwd=demo.folder, secret=False)
    assert 1 == result.returncode
    assert "CALLSTATE_SECRET" in result.stderr
    assert "+1555" not in result.stdout + result.stderr


def test_inspect_unknown_session_fails_naming_it(demo: Demo) -> None:
    """An unknown session id exits 1 with an error naming it on stderr."""
    result = run_cli("inspect", "no-such-session", "--db", "demo.db", cwd=demo.folder)
    assert 1 == result.returncode
    assert "session 'no-such-session' not found" in result.stderr
    assert "" == result.stdout


async def test_sessions_lists_newest_interaction_first(tmp_path: Path) -> None:
    """``sessions`` lists every session with agent, epoch and seq, most recent first."""
    clock = FakeClock()
    async with callstate.Keeper(f"sqlite:///{tmp_path}/s.db", clock=clock) as keeper:
        old = await keeper.start(agent="triage", session_id="older-call")
        old.user_said("hello")
        await old.close()
        clock.advance(60)
        new = await keeper.start(agent="billing", session_id="newer-call")
        await new.close()
    result = run_cli("sessions", "--db", "s.db", cwd=tmp_path)
    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert out.index("newer-call") < out.index("older-call")
    row = next(line for line in out.splitlines() if "older-call" in line)
    assert ["older-call", "triage", "active", "1", "2"] == row.split()[:5]


def test_read_commands_never_create_a_database(tmp_path: Path) -> None:
    """``sessions``/``inspect`` on a missing file fail naming it and create nothing."""
    for args in (["sessions"], ["inspect", "abc"]):
        result = run_cli(*args, "--db", "missing.db", cwd=tmp_path)
        assert 1 == result.returncode
        assert "'missing.db'" in result.stderr
    assert [] == list(tmp_path.iterdir())


def test_every_subcommand_takes_db() -> None:
    """Each registered subcommand accepts --db PATH."""
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"demo", "inspect", "sessions"} <= set(subs.choices)
    for name, sub in subs.choices.items():
        assert any("--db" in a.option_strings for a in sub._actions), name


def test_a_registered_command_runs_through_main(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A function registered with ``@command`` is parsed and dispatched by ``main``."""

    async def hello(args: argparse.Namespace, out: Console) -> int:
        out.print(f"hello {args.name} from {args.db}")
        return 7

    cli.command("hello-test", "say hello", configure=lambda p: p.add_argument("name"))(hello)
    try:
        status = cli.main(["hello-test", "world", "--db", str(tmp_path / "x.db")])
    finally:
        del cli.COMMANDS["hello-test"]
    assert 7 == status
    assert f"hello world from {tmp_path / 'x.db'}" in capsys.readouterr().out


async def test_inspect_prints_what_was_said_literally(tmp_path: Path) -> None:
    """Text that looks like console markup is printed as said; default fields are left out."""
    said = "[bold]not markup[/bold] and a stray [/red] tag"
    async with callstate.Keeper(f"sqlite:///{tmp_path}/m.db", clock=FakeClock()) as keeper:
        s = await keeper.start(agent="[agent]", session_id="markup-call")
        s.user_said(said)
        s.update_userdata(tier="gold")
        await s.close()
    result = run_cli("inspect", "markup-call", "--db", "m.db", cwd=tmp_path)
    assert 0 == result.returncode, result.stderr
    assert f"“{said}”" in result.stdout
    assert "agent '[agent]'" in result.stdout
    patch = next(line for line in result.stdout.splitlines() if "userdata.patch" in line)
    assert 'set={"tier":"gold"}' in patch
    assert "unset" not in patch
