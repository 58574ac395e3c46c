"""The quick check of small payloads (``limits._quick``) gives exactly the answers of the
general walk: the same values pass, the same are refused, with the same error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate import CallstateError, Limits
from callstate.journal import limits as lim


class _Text(str):
    """A str subclass: counted by its length, as the walk counts it."""


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.binary(max_size=6),
    st.text(max_size=6).map(_Text),
)


def _payloads() -> st.SearchStrategy[Any]:
    return st.recursive(
        _leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5),
            st.dictionaries(st.text(max_size=4), inner, max_size=5),
            st.lists(inner, max_size=3).map(tuple),
        ),
        max_leaves=60,
    )


def _answer(value: Any, limits: Limits) -> tuple[type, str] | None:
    try:
        lim.check_value(value, field="result", limits=limits)
    except CallstateError as exc:
        return type(exc), str(exc)
    return None


def _walk_only(value: Any, limits: Limits, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(lim, "_quick", lambda *_: -1)
        return _answer(value, limits)


@settings(max_examples=400, deadline=None)
@given(
    value=_payloads(),
    depth=st.integers(1, 6),
    cap=st.integers(8, 400),
)
def test_the_quick_check_answers_as_the_walk(value: Any, depth: int, cap: int) -> None:
    """Over nested dicts, lists, tuples and leaves, under tight and loose limits, the
    check with its quick path says what the walk alone says."""
    limits = Limits(max_depth=depth, max_payload_bytes=cap)
    with pytest.MonkeyPatch.context() as mp:
        expected = _walk_only(value, limits, mp)
    assert expected == _answer(value, limits)


def test_shared_and_cyclic_values_get_the_walks_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list that holds itself and one that shares a child many times over are
    refused or passed as the walk decides (too deep; too large once shared)."""
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    shared = ["x" * 40] * 4
    fan = [shared] * 40  # 40 references to one 160-byte list
    limits = Limits(max_payload_bytes=4096)
    for value in (cyclic, fan, [fan], {"a": fan}):
        expected = _walk_only(value, limits, monkeypatch)
        assert expected is not None
        assert expected == _answer(value, limits)


def test_a_small_result_takes_the_quick_path() -> None:
    """A realistic tool result is vouched for by the quick check, without the walk."""
    result = {
        "booking_id": "B-3558",
        "status": "pending_deposit",
        "party_size": 3,
        "restaurant": {"name": "The Lantern", "address": "15 Old Market"},
        "notes": ["arriving by wheelchair", "celebrating an anniversary"],
    }
    assert 0 < lim._quick(result, 1, Limits(), [lim._QUICK_CONTAINERS])
    assert -1 == lim._quick(result, 1, Limits(max_depth=1), [lim._QUICK_CONTAINERS])
    assert -1 == lim._quick(result, 1, Limits(), [1])
