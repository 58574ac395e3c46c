"""Every Pipecat deprecation fails the test that triggers it.

Pipecat warns through ``pipecat.utils.deprecation.warn_deprecated``, which raises its
``DeprecationWarning`` under an ``always`` filter of its own (so ``filterwarnings =
error`` never turns it into an exception) and only once per call site per process. So
each test phase records what is shown, fails on a Pipecat deprecation, and passes every
other warning on to pytest as it was; the per-site record is cleared before each phase
so every test that reaches a deprecated path fails, not only the first.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

#: Pipecat's canonical deprecation sentence (``pipecat.utils.deprecation.DEPRECATION_MESSAGE_RE``)
_PIPECAT_STYLE = re.compile(r"^`[^`]+` is deprecated since \d+\.\d+\.\d+ and will be removed in ")


_SPEC = importlib.util.find_spec("pipecat")
#: where Pipecat is installed (a warning raised from there is its own)
_PIPECAT_DIR = str(Path(_SPEC.origin).parent) if _SPEC and _SPEC.origin else None


def _pipecat_deprecation(w: warnings.WarningMessage) -> bool:
    """A deprecation Pipecat raised: named by its template, or raised from its package."""
    if not issubclass(w.category, DeprecationWarning):
        return False
    inside = _PIPECAT_DIR is not None and w.filename.startswith(_PIPECAT_DIR)
    return inside or bool(_PIPECAT_STYLE.match(str(w.message)))


def _forget_warned_sites() -> None:
    module = sys.modules.get("pipecat.utils.deprecation")
    sites = getattr(module, "_warned_sites", None)
    if isinstance(sites, set):
        sites.clear()


def _failing_on_pipecat_deprecations() -> Generator[None, Any, Any]:
    _forget_warned_sites()
    shown: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as shown:
            result = yield
    finally:
        _report(shown)  # after the recorder is gone, so what is passed on reaches pytest
    return result


def _report(shown: list[warnings.WarningMessage]) -> None:
    """Pass on what is not a Pipecat deprecation; fail on what is."""
    msg = _passed_on(shown)
    if msg:
        raise pytest.fail.Exception(msg, pytrace=False)


def _passed_on(shown: list[warnings.WarningMessage]) -> str:
    """Re-emit what is not a Pipecat deprecation; return the failure message for the rest."""
    deprecated = [w for w in shown if _pipecat_deprecation(w)]
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown once already: pytest records it, as before
        for w in shown:
            if w not in deprecated:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if not deprecated:
        return ""
    lines = "\n".join(f"  {w.filename}:{w.lineno}: {w.message}" for w in deprecated)
    return f"Pipecat deprecation{'s' if len(deprecated) > 1 else ''} reached:\n{lines}"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    """A test module whose import reaches a Pipecat deprecation fails to collect."""
    shown: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as shown:
            report = yield
    finally:
        msg = _passed_on(shown)
    if msg and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = msg
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _failing_on_pipecat_deprecations())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _failing_on_pipecat_deprecations())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _failing_on_pipecat_deprecations())
