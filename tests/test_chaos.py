"""Short, bounded runs of scripts/chaos.py: SIGKILLed workers, dropped replies, a store
restart; every invariant holds and the run really did something."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services import PrivateRedis, missing, postgres_url

ROOT = Path(__file__).resolve().parents[1]
CHAOS = ROOT / "scripts" / "chaos.py"
INVARIANTS = (
    "acknowledged_events_lost",
    "duplicate_non_idempotent_writes",
    "calls_without_one_outcome",
    "followups_run_twice",
)

pytestmark = pytest.mark.slow


def _run(*args: str) -> dict[str, str]:
    cmd = [sys.executable, str(CHAOS), "--duration", "8", "--kill-every", "1.2"]
    try:
        result = subprocess.run(
            [*cmd, "--stall-report", "60", *args],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # say where it hung: the script's task stacks
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"chaos run hung; its stderr:\n{err}")
    assert 0 == result.returncode, result.stdout + result.stderr
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert "held" == out["invariants"]
    for name in INVARIANTS:
        assert "0" == out[name], name
    assert int(out["worker_kills"]) >= 3
    assert int(out["acknowledged_flushes"]) > 0
    assert int(out["non_idempotent_writes"]) > 0
    assert int(out["followups_completed"]) > 0
    return out


def test_chaos_on_sqlite(tmp_path: Path) -> None:
    """Workers SIGKILLed at random on one SQLite file: nothing acknowledged is lost, no write repeats."""
    _run("--store", f"sqlite:///{tmp_path}/chaos.db")


def test_chaos_on_redis_with_drops_and_a_restart(tmp_path: Path) -> None:
    """A private Redis (AOF always) restarted mid-run, replies dropped, workers killed: invariants hold."""
    if shutil.which("redis-cli") is None:
        missing("redis-server", "redis-cli is missing")
    server = PrivateRedis(tmp_path, appendonly=True)
    server.start()
    restart = (
        f"redis-cli -p {server.port} shutdown nosave >/dev/null 2>&1; "
        f"{server.binary} --port {server.port} --bind 127.0.0.1 --save '' --dir {tmp_path} "
        "--appendonly yes --appendfsync always --daemonize yes --logfile ''"
    )
    try:
        out = _run(
            "--store",
            server.url,
            "--drop",
            "0.03",
            "--restart-cmd",
            restart,
            "--restart-every",
            "3",
        )
        assert int(out["store_restarts"]) >= 1
    finally:
        subprocess.run(
            ["redis-cli", "-p", str(server.port), "shutdown", "nosave"],
            capture_output=True,
            check=False,
        )
        if server.proc is not None:
            server.proc.wait(timeout=10)


def test_chaos_on_postgres_with_drops() -> None:
    """PostgreSQL through a proxy dropping replies, workers killed: invariants hold."""
    _run("--store", postgres_url(), "--drop", "0.03")
