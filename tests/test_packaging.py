"""Packaging: the wheel's metadata, typing marker and command, and what CI runs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_reserves_the_extras_and_the_build() -> None:
    """hatchling build, Python >= 3.11, msgspec core, and every reserved extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "hatchling.build" == project["build-system"]["build-backend"]
    meta = project["project"]
    assert ">=3.11" == meta["requires-python"]
    assert any(d.startswith("msgspec") for d in meta["dependencies"])
    extras = meta["optional-dependencies"]
    assert {"redis", "postgres", "pipecat", "livekit", "openai", "dev"} <= set(extras)
    assert any(d.startswith("aiosqlite") for d in extras["dev"])
    assert {"callstate": "callstate.cli:main"} == meta["scripts"]


def test_wheel_ships_py_typed_the_command_and_extras(tmp_path: Path) -> None:
    """A wheel built from the tree has py.typed, the browser client, the command and the extras."""
    build = ["wheel", str(ROOT), "--no-deps", "--no-build-isolation", "--quiet", "-w"]
    result = subprocess.run(
        [sys.executable, "-m", "pip", *build, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == result.returncode, result.stderr
    (wheel,) = tmp_path.glob("callstate-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        metadata = z.read(f"{info}/METADATA").decode().splitlines()
    assert "callstate/py.typed" in names
    assert "callstate/cli/main.py" in names
    assert {"callstate/web/static/callstate.js", "callstate/web/static/callstate.d.ts"} <= names
    assert "callstate = callstate.cli:main" in entry_points.splitlines()
    assert "Requires-Python: >=3.11" in metadata
    provided = {line.split(": ", 1)[1] for line in metadata if line.startswith("Provides-Extra:")}
    assert {
        "agents",
        "dev",
        "gemini",
        "livekit",
        "openai",
        "otel",
        "peers",
        "pipecat",
        "postgres",
        "prometheus",
        "redis",
        "web",
        "webrtc",
    } == provided


def test_ci_runs_the_readme_test_command_with_services_required() -> None:
    """.ci/run sets CALLSTATE_REQUIRE_SERVICES=1, runs exactly `bash scripts/test`, then
    the 3.13 run `bash scripts/test_py313` and nothing else."""
    lines = [
        line.strip()
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "export CALLSTATE_REQUIRE_SERVICES=1" in lines
    assert ["bash scripts/test", "bash scripts/test_py313"] == lines[-2:]
    assert lines.index("export CALLSTATE_REQUIRE_SERVICES=1") < len(lines) - 2
