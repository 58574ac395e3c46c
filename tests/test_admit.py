"""The hot path's one-pass check (``admit``) refuses and accepts exactly what the two full
checks do (``check_limits``, then ``check_recorded``), with the same typed error and
message naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate import CallstateError, CodecError, PayloadTooLarge
from callstate.journal import events as ev
from callstate.journal.limits import Limits, admit, check_limits

SMALL = Limits(max_text_bytes=8)


def _reference(event: Any, limits: Limits) -> CallstateError | None:
    """What the two full checks say of ``event``: None, or the error they raise."""
    try:
        check_limits(event, limits)
        ev.check_recorded(event)
    except CallstateError as exc:
        return exc
    return None


def _admitted(event: Any, limits: Limits) -> CallstateError | None:
    try:
        admit(event, limits)
    except CallstateError as exc:
        return exc
    return None


def _same(event: Any, limits: Limits) -> None:
    expected, got = _reference(event, limits), _admitted(event, limits)
    assert type(expected) is type(got)
    assert str(expected) == str(got)


@pytest.mark.parametrize(
    ("event", "error", "field"),
    [
        (ev.UserTurn(seq=2, at=1.0, text=123), CodecError, "`$.text`"),  # type: ignore[arg-type]
        (ev.UserTurn(seq=2, at=1.0, text="nine char"), PayloadTooLarge, "`$.text`"),
        (ev.UserPartial(seq=2, at=1.0, text="lone \ud800"), CodecError, "`$.text`"),
        (ev.AgentStarted(seq=2, at=1.0, utterance_id=7, text="hi"), CodecError, "`$.utterance_id`"),  # type: ignore[arg-type]
        (
            ev.AgentProgress(seq=2, at=1.0, utterance_id="u1", spoken_text="", text=3),  # type: ignore[arg-type]
            CodecError,
            "`$.text`",
        ),
        (
            ev.AgentProgress(seq=2, at=1.0, utterance_id="u1", spoken_text="", text="ninechars"),
            PayloadTooLarge,
            "`$.text`",
        ),
        (ev.AgentFinished(seq=2, at=1.0, utterance_id="u1", text=["t"]), CodecError, "`$.text`"),  # type: ignore[arg-type]
        (ev.UserTurn(seq=2, at=float("inf"), text="hi"), CodecError, "`$.at`"),
        (ev.UserTurn(seq="2", at=1.0, text="hi"), CodecError, "`$.seq`"),  # type: ignore[arg-type]
        (
            ev.Interrupted(seq=2, at=1.0, heard_text="much too long"),
            PayloadTooLarge,
            "`$.heard_text`",
        ),
        (ev.Interrupted(seq=2, at=1.0, unspoken_text=None), CodecError, "`$.unspoken_text`"),  # type: ignore[arg-type]
        (ev.Interrupted(seq=2, at=1.0, overtaken=[1]), CodecError, "`$.overtaken[0]`"),  # type: ignore[list-item]
        (ev.Interrupted(seq=2, at=1.0, overtaken=["c\ud800"]), CodecError, "`$.overtaken`"),
        (ev.Interrupted(seq=2, at=1.0, audio_end_ms=True), CodecError, "`$.audio_end_ms`"),
    ],
)
def test_admit_refuses_what_the_full_checks_refuse(
    event: Any, error: type[CallstateError], field: str
) -> None:
    """admit raises the full checks' typed error, with their message naming the field."""
    with pytest.raises(error) as exc:
        admit(event, SMALL)
    assert field in str(exc.value)
    _same(event, SMALL)


_TEXT = st.text(max_size=12)
_INTS = st.one_of(st.none(), st.integers(min_value=-(2**65), max_value=2**65))


@given(_TEXT, _TEXT, st.one_of(st.none(), _TEXT), st.lists(_TEXT, max_size=3), _INTS)
@settings(max_examples=300)
def test_admit_agrees_with_the_full_checks(
    text: str, other: str, extra: str | None, ids: list[str], end: int | None
) -> None:
    """For any texts, call ids and audio end, admit accepts exactly what the full checks
    accept and otherwise raises their error (a cap of 8 bytes puts lengths on both sides)."""
    heard: dict[str, Any] = {"heard_text": text, "unspoken_text": other}
    for event in (
        ev.UserPartial(seq=3, at=2.5, text=text),
        ev.UserTurn(seq=3, at=2.5, text=text),
        ev.AgentStarted(seq=3, at=2.5, utterance_id=other, text=text),
        ev.AgentProgress(seq=3, at=2.5, utterance_id=other, spoken_text=text, text=extra),
        ev.AgentFinished(seq=3, at=2.5, utterance_id=other, text=extra),
        ev.Interrupted(seq=3, at=2.5, utterance_id=extra, audio_end_ms=end, overtaken=ids, **heard),
    ):
        _same(event, SMALL)
        _same(event, Limits())


def test_admit_runs_the_full_checks_for_other_events() -> None:
    """An event without a one-pass check (a userdata patch) gets the full checks' error."""
    event = ev.UserdataPatch(seq=2, set={"when": object()})
    with pytest.raises(CodecError, match=r"`\$\.set`"):
        admit(event, Limits())
    _same(event, Limits())
