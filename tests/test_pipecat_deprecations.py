"""tests/conftest.py fails every test that reaches a Pipecat deprecation, at run or import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARN = (
    "from pipecat.utils.deprecation import warn_deprecated\n"
    "MSG = '`Old` is deprecated since 1.0.0 and will be removed in 2.0.0. Use `New` instead.'\n"
)


def pytest_on(tmp_path: Path, files: dict[str, str]) -> str:
    """Run pytest with the project's conftest as a plugin on ``files``; its summary lines."""
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-rA", "-p",
         "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    return done.stdout


def test_each_test_reaching_a_pipecat_deprecation_fails(tmp_path: Path) -> None:
    """Both tests reaching the same deprecated line fail (Pipecat warns once per site);
    a plain warning is still reported as a warning, and a clean test passes."""
    out = pytest_on(
        tmp_path,
        {
            "test_run.py": WARN + "import warnings\n"
            "def test_a():\n    warn_deprecated(MSG)\n"
            "def test_b():\n    warn_deprecated(MSG)\n"
            "def test_plain():\n    warnings.warn('just a note', UserWarning)\n"
            "def test_clean():\n    pass\n"
        },
    )
    assert "2 failed, 2 passed, 1 warning" in out
    assert "FAILED test_run.py::test_a - Failed: Pipecat deprecation reached:" in out
    assert "FAILED test_run.py::test_b - Failed: Pipecat deprecation reached:" in out


def test_a_module_whose_import_reaches_one_fails_to_collect(tmp_path: Path) -> None:
    """A deprecation reached while a test module is imported is a collection error."""
    out = pytest_on(tmp_path, {"test_import.py": WARN + "warn_deprecated(MSG)\n"})
    assert "ERROR test_import.py - Pipecat deprecation reached:" in out
