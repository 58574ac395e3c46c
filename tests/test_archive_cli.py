"""``callstate archive list | show | export`` and the demo's continuity scenes, run as
the real command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import callstate
from callstate.cli.demo import DEMO_SECRET
from callstate.testing import FakeClock

CALLER = "+15551234567"
SECRET = b"s" * 32


def _cli(*args: str, cwd: Path, secret: bytes = SECRET) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "CALLSTATE_SECRET": secret.decode()}
    return subprocess.run(
        [sys.executable, "-m", "callstate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    """A database with a completed call, a resumed one and an abandoned one."""
    path = tmp_path / "cs.db"
    clock = FakeClock()
    async with callstate.Keeper(f"sqlite:///{path}", secret=SECRET, clock=clock) as k:
        done = await k.start(caller=CALLER, agent="triage", session_id="call-done")
        done.user_said("what time do you open")
        await done.end(reason="caller_hangup")
        dropped = await k.start(caller="+15550000000", agent="billing", session_id="call-drop")
        dropped.user_said("my card was charged twice")
        dropped.connection_lost("page reload")  # a live link would make the token refused
        await dropped.flush()
        resumed = await k.resume(dropped.resume_token())
        resumed.user_said("still there?")
        await resumed.end(reason="caller_hangup")
        left = await k.start(agent="web", session_id="call-left")
        await left.close()
        clock.advance(601)
        await k.sweep()
    return path


def test_archive_list_shows_every_call_with_its_outcome(db: Path) -> None:
    """archive list prints one row per call with outcome, health class, legs and agent."""
    result = _cli("archive", "list", "--db", str(db), cwd=db.parent)
    assert 0 == result.returncode, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("call-"):
            rows[parts[0]] = [parts[1], parts[2], parts[4], parts[5]]
    assert {
        "call-done:1": ["completed", "caller_ended", "1", "triage"],
        "call-drop:1": ["superseded", "superseded", "2", "billing"],
        "call-drop:2": ["recovered", "recovered", "2", "billing"],
        "call-left:1": ["abandoned", "caller_never_returned", "1", "web"],
    } == rows
    assert "\x1b[" not in result.stdout


def test_archive_list_filters(db: Path) -> None:
    """--caller, --session and --outcome narrow the list."""
    by_caller = _cli("archive", "list", "--db", str(db), "--caller", CALLER, cwd=db.parent)
    by_outcome = _cli("archive", "list", "--db", str(db), "--outcome", "abandoned", cwd=db.parent)
    by_session = _cli("archive", "list", "--db", str(db), "--session", "call-drop", cwd=db.parent)
    assert ("call-done:1" in by_caller.stdout, "call-drop" in by_caller.stdout) == (True, False)
    assert ("call-left:1" in by_outcome.stdout, "call-done" in by_outcome.stdout) == (True, False)
    assert 2 == by_session.stdout.count("call-drop:")


def test_archive_without_the_secret_lists_but_never_shows_the_caller(db: Path) -> None:
    """Without CALLSTATE_SECRET: list works, show marks the caller sealed, --caller refuses."""
    listed = _cli("archive", "list", "--db", str(db), cwd=db.parent, secret=b"")
    shown = _cli("archive", "show", "call-done:1", "--db", str(db), cwd=db.parent, secret=b"")
    by_caller = _cli(
        "archive", "list", "--db", str(db), "--caller", CALLER, cwd=db.parent, secret=b""
    )
    assert (0, 0, 1) == (listed.returncode, shown.returncode, by_caller.returncode)
    assert "call-done:1" in listed.stdout
    assert "(sealed: set CALLSTATE_SECRET)" in shown.stdout
    assert "set CALLSTATE_SECRET to filter by --caller" in by_caller.stderr
    assert [] == [o for o in (listed, shown, by_caller) if "5551234567" in o.stdout + o.stderr]


def test_archive_show_prints_transcript_and_recovery(db: Path) -> None:
    """archive show (by a unique prefix) prints facts, transcript and recovery events."""
    result = _cli("archive", "show", "call-drop:2", "--db", str(db), cwd=db.parent)
    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert "recovered" in out
    assert "still there?" in out
    assert "session.resumed" in out
    assert "my card was charged twice" not in out  # that part is call-drop:1's record
    prefix = _cli("archive", "show", "call-do", "--db", str(db), cwd=db.parent)
    assert "what time do you open" in prefix.stdout


def test_archive_show_unknown_record_fails_naming_it(db: Path) -> None:
    """An unknown record id exits 1 with an error naming it."""
    result = _cli("archive", "show", "nope", "--db", str(db), cwd=db.parent)
    assert 1 == result.returncode
    assert "archive record 'nope' matches no record" in result.stderr


def test_archive_export_writes_one_json_file_per_call(db: Path, tmp_path: Path) -> None:
    """archive export DIR writes one JSON file per call, each a full record."""
    out_dir = tmp_path / "export"
    result = _cli("archive", "export", str(out_dir), "--db", str(db), cwd=db.parent)
    assert 0 == result.returncode, result.stderr
    files = sorted(p.name for p in out_dir.iterdir())
    assert ["call-done.1.json", "call-drop.1.json", "call-drop.2.json", "call-left.1.json"] == files
    record = json.loads((out_dir / "call-done.1.json").read_text())
    assert ("completed", "what time do you open") == (
        record["outcome"],
        record["transcript"][0]["text"],
    )


def test_archive_commands_never_create_a_database(tmp_path: Path) -> None:
    """Reading the archive of a missing file fails and creates nothing."""
    result = _cli("archive", "list", "--db", "missing.db", cwd=tmp_path)
    assert 1 == result.returncode
    assert [] == list(tmp_path.iterdir())


def test_demo_shows_token_caller_follow_up_and_expiry(tmp_path: Path) -> None:
    """The demo resumes a reloaded page by token, a phone caller by caller id, runs the
    follow-ups after their grace, expires a silent caller, and archives every call."""
    demo = _cli("demo", "--db", "demo.db", cwd=tmp_path)
    assert 0 == demo.returncode, demo.stdout + demo.stderr
    out = demo.stdout
    assert "problem:" not in out
    assert "keeper.resume(token) → epoch 2, gap 3 s" in out
    assert "while you were saying “and arrives on Friday before noon”" in out
    assert "keeper.resume_caller(…)" in out
    assert "follow-up is cancelled" in out
    assert 2 == out.count("(idempotency key)")
    assert "SessionExpired" in out
    listed = _cli("archive", "list", "--db", "demo.db", cwd=tmp_path, secret=DEMO_SECRET).stdout
    for outcome in ("completed", "superseded", "recovered", "abandoned"):
        assert outcome in listed


def test_the_demo_runs_again_in_the_same_folder(tmp_path: Path) -> None:
    """Run twice on one database, the demo succeeds both times, and each time the
    ring-back's one follow-up gets both legs' requests."""
    from callstate.cli.continuity_demo import PHONE_1, PHONE_2

    for _ in range(2):
        demo = _cli("demo", "--db", "demo.db", cwd=tmp_path)
        assert 0 == demo.returncode, demo.stdout + demo.stderr
        assert "problem:" not in demo.stdout
        follow_up = " ".join(demo.stdout.split("five minutes later", 1)[1].split())
        assert f"the caller asked “{PHONE_1}” “{PHONE_2}”" in follow_up
    listed = _cli("archive", "list", "--db", "demo.db", cwd=tmp_path, secret=DEMO_SECRET)
    rows = listed.stdout.splitlines()
    assert 2 == sum("abandoned" in r for r in rows)
