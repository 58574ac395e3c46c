"""The sealed formats' golden files keep opening to exactly what was sealed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from callstate import SealError
from callstate.archive.records import decode_record, open_record
from callstate.journal import events as ev
from callstate.journal.sealed import open_event
from callstate.journal.snapshot import decode_state
from callstate.sealing import Sealer

GOLDEN = Path(__file__).parent / "golden"
FILES = ["events_v2_sealed.jsonl", "snapshot_v3.msgpack", "archive_v2_sealed.json"]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sealed", GOLDEN / "make_sealed_golden.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_sealed = _load()
SEALER = Sealer([b"a-newer-secret-after-rotation-32", make_sealed.SEAL_SECRET])


@pytest.mark.parametrize("name", FILES)
def test_golden_sealed_files_hold_no_caller_data(name: str) -> None:
    """No golden sealed file holds the caller id or a personal value in the clear."""
    data = (GOLDEN / name).read_bytes()
    assert [] == [n for n in (b"5551234567", b"ada@example.org", b"SW1A") if n in data]


def test_golden_sealed_events_open_to_the_recorded_events() -> None:
    """events_v2_sealed.jsonl: format-2 events that open (after rotation) to the plain ones."""
    lines = (GOLDEN / "events_v2_sealed.jsonl").read_bytes().splitlines()
    stored = [ev.decode_event(line) for line in lines]
    assert [ev.SEALED_VERSION] * 2 == [e.v for e in stored]
    opened = [open_event(e, SEALER, session_id=make_sealed.SESSION) for e in stored]
    assert make_sealed.golden_sealed_events() == opened


def test_golden_sealed_snapshot_opens_to_the_state() -> None:
    """snapshot_v3.msgpack: format 3, opening to the golden state with its personal key."""
    data = (GOLDEN / "snapshot_v3.msgpack").read_bytes()
    assert 3 == msgspec.msgpack.decode(data)[0]
    assert make_sealed.golden_personal_state() == decode_state(data, SEALER)


def test_golden_sealed_archive_record_opens_to_the_record() -> None:
    """archive_v2_sealed.json: format 2, opening to the golden record."""
    stored = decode_record((GOLDEN / "archive_v2_sealed.json").read_bytes())
    assert (2, None) == (stored.v, stored.caller)
    assert make_sealed.golden_archive_record() == open_record(stored, SEALER)


def test_golden_sealed_files_refuse_another_secret() -> None:
    """Without the secret that sealed them, the golden files raise SealError."""
    other = Sealer([b"a-newer-secret-after-rotation-32"])
    line = (GOLDEN / "events_v2_sealed.jsonl").read_bytes().splitlines()[0]
    with pytest.raises(SealError, match="key id"):
        open_event(ev.decode_event(line), other, session_id=make_sealed.SESSION)
    with pytest.raises(SealError):
        decode_state((GOLDEN / "snapshot_v3.msgpack").read_bytes(), other)
    with pytest.raises(SealError):
        open_record(decode_record((GOLDEN / "archive_v2_sealed.json").read_bytes()), other)


def test_sealed_golden_writer_refuses_to_overwrite(capsys: pytest.CaptureFixture[str]) -> None:
    """Running the writer again changes no golden file."""
    before = {n: (GOLDEN / n).read_bytes() for n in FILES}
    assert 0 == make_sealed.main()
    assert "refusing to overwrite" in capsys.readouterr().err
    assert before == {n: (GOLDEN / n).read_bytes() for n in FILES}
