"""Events added to format 1 after its first golden file: their own golden file keeps decoding."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import msgspec

from callstate.journal import events as ev

GOLDEN = Path(__file__).parent / "golden"


def _make_golden() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines() -> list[bytes]:
    return (GOLDEN / "events_v1_added.jsonl").read_bytes().splitlines()


def test_added_golden_events_decode_to_the_expected_structs() -> None:
    """Every line of events_v1_added.jsonl decodes to exactly the event it was written from."""
    assert _make_golden().added_events() == [ev.decode_event(line) for line in _lines()]


def test_added_golden_events_set_every_field_away_from_its_default() -> None:
    """Each added golden line sets every field of its type (v aside) to a non-default value."""
    by_tag = {cls.__struct_config__.tag: cls for cls in ev.EVENT_TYPES}
    kept = []
    for line in _lines():
        raw = json.loads(line)
        event = ev.decode_event(line)
        for f in msgspec.structs.fields(by_tag[raw["type"]]):
            if f.name == "v":
                continue
            default = (
                f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
            )
            if getattr(event, f.name) == default:
                kept.append(f"{raw['type']}.{f.name}")
    assert [] == kept


def test_every_event_type_has_a_golden_line() -> None:
    """The golden v1 event files together hold a line of every event type there is."""
    tags = {
        json.loads(line)["type"]
        for path in GOLDEN.glob("events_v1*.jsonl")
        for line in path.read_bytes().splitlines()
    }
    assert set() == {cls.__struct_config__.tag for cls in ev.EVENT_TYPES} - tags
