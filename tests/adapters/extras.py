"""What an adapter's import says when the framework it needs is missing."""

from __future__ import annotations

import subprocess
import sys


def import_error(module: str, missing: str) -> str:
    """The message of the ImportError raised importing ``module`` with ``missing`` absent."""
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        f"try:\n    import {module}\n"
        "except ImportError as e:\n    print(e)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
