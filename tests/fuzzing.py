"""Shared pieces of the fuzz tests (tests/test_fuzz_*.py): how many cases, hostile text
and values, and a runner that counts the cases it really ran.

``CALLSTATE_FUZZ_EXAMPLES`` sets the cases per entry point: CI (``.ci/run``) runs
10,000, a plain ``scripts/test`` 1,000. Every fuzz test asserts that many ran, so a
strategy that stops early fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import callstate

EXAMPLES = int(os.environ.get("CALLSTATE_FUZZ_EXAMPLES", "1000"))
#: Cases for an entry point that does real I/O on a server (a sample, not the bulk).
SAMPLE = max(1, EXAMPLES // 50)

_T = TypeVar("_T")

#: Any code point, lone surrogates and NUL included (hypothesis leaves surrogates out
#: unless told).
any_char = st.characters(exclude_categories=())
hostile_text = st.one_of(
    st.text(any_char, max_size=40),
    st.text(st.sampled_from("\x00\ud800\udfff\udc80\ufffe\U0010ffffé-_=.~+/ cs1"), max_size=20),
    st.text(max_size=40),
)


def _deep(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _self_referencing(kind: int) -> Any:
    if kind == 0:
        a: list[Any] = []
        a.append(a)
        return a
    if kind == 1:
        d: dict[str, Any] = {}
        d["x"] = [1, {"y": d}]
        return d
    b: list[Any] = [0]
    b.append({"back": b})
    return {"a": b, "b": [b, {"c": b}]}


class _Opaque:
    """An object no encoder knows."""


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
odd_leaves = st.one_of(
    st.binary(max_size=8),
    st.just(_Opaque()),
    st.sets(st.integers(), max_size=3),
    st.tuples(st.integers(), hostile_text),
    st.complex_numbers(allow_nan=False),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=10,
)
#: Sizes around the default caps (64 KiB tool payloads, 1 MiB userdata), and small ones.
#: (One case in twenty is big: enough to cross every cap, few enough to stay quick.)
sizes = st.integers(min_value=0, max_value=19).flatmap(
    lambda r: (
        st.sampled_from([65_535, 65_537, 1_048_575, 1_048_577])
        if r == 0
        else st.integers(min_value=0, max_value=2_000)
    )
)
huge_values = st.one_of(
    sizes.map(lambda n: "x" * n),
    sizes.map(lambda n: list(range(n // 4))),
    st.integers(min_value=1, max_value=1_200).map(lambda n: [[0] * n] * n),  # shared rows
)
#: Deep, wide, self-referencing, huge and non-JSON values, and plain ones.
hostile_values = st.one_of(
    json_values,
    st.recursive(
        json_leaves | odd_leaves,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.one_of(hostile_text, st.integers(), st.none()), inner, max_size=3)
        ),
        max_leaves=6,
    ),
    st.builds(_deep, st.integers(min_value=0, max_value=1500), json_leaves),
    st.integers(min_value=0, max_value=2).map(_self_referencing),
    huge_values,
)


def fuzz(strategy: st.SearchStrategy[_T], check: Callable[[_T], None], examples: int) -> int:
    """Run ``check`` on ``examples`` generated cases; returns how many ran.

    ``check`` raising anything fails the test (hypothesis shrinks it to a minimal case).
    """
    ran = [0]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: _T) -> None:
        ran[0] += 1
        check(case)

    run()
    return ran[0]


def only_typed(fn: Callable[[], object]) -> object | None:
    """``fn()``, or None if it raised a CallstateError (anything else propagates)."""
    try:
        return fn()
    except callstate.CallstateError:
        return None
