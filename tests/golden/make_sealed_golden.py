"""Write the golden files of the sealed formats (run once; it never overwrites).

Each holds caller data sealed under :data:`SEAL_SECRET`:

- ``events_v2_sealed.jsonl``: a ``SessionStarted`` and a ``UserdataPatch`` as a keeper
  with a secret stores them (event format 2);
- ``snapshot_v3.msgpack``: the snapshot of ``make_golden.golden_state()`` with the
  ``time`` userdata key personal (snapshot format 3);
- ``archive_v2_sealed.json``: ``make_archive_golden``'s record, sealed (archive format 2).

``tests/test_sealing_golden.py`` checks that they keep opening to exactly what was
sealed. Sealing draws a random nonce, so they cannot be rewritten byte for byte: a
format change that stops them opening needs a new version, never an edit.

    python tests/golden/make_sealed_golden.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import msgspec

from callstate.archive.records import ArchiveRecord, build_record, encode_record, seal_record
from callstate.journal import events as ev
from callstate.journal.sealed import seal_event
from callstate.journal.snapshot import encode_snapshot
from callstate.journal.state import SessionState, fold
from callstate.sealing import Sealer

HERE = Path(__file__).parent


def _sibling(name: str) -> ModuleType:
    """A golden writer beside this one, loaded by path (this folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _sibling("make_golden")
make_archive_golden = _sibling("make_archive_golden")
EVENTS_FILE = HERE / "events_v2_sealed.jsonl"
SNAPSHOT_FILE = HERE / "snapshot_v3.msgpack"
ARCHIVE_FILE = HERE / "archive_v2_sealed.json"

SEAL_SECRET = b"callstate-golden-seal-key-v1!!!!"
SESSION = "sess-golden"
T: float = make_golden.T


def golden_sealed_events() -> list[ev.Event]:
    """The events as recorded (plain), before sealing."""
    return [
        ev.SessionStarted(
            seq=1,
            at=T,
            session_id=SESSION,
            agent="triage",
            caller="+15551234567",
            userdata={"booking": "B1", "email": "ada@example.org"},
            metadata={"channel": "pstn"},
            personal=["email", "postcode"],
        ),
        ev.UserdataPatch(seq=2, at=T + 1, set={"postcode": "SW1A 2AA", "party": 4}),
    ]


def golden_personal_state() -> SessionState:
    """``make_golden.golden_state()`` with its ``time`` userdata key personal."""
    state: SessionState = make_golden.golden_state()
    state.personal = ["time"]
    return state


def golden_archive_record() -> ArchiveRecord:
    """The archive golden record, with its ``booking`` userdata key personal."""
    state = fold(make_archive_golden.golden_events())
    state.personal = ["booking"]
    record = build_record(state, outcome="recovered", closed_at=1_700_000_031.0)
    return msgspec.structs.replace(record, health=None)  # written before health classes


def main() -> int:
    """Write each golden file that does not exist yet; never overwrite one."""
    sealer = Sealer([SEAL_SECRET])
    personal = ["email", "postcode"]
    events = [
        ev.encode_event(seal_event(e, sealer, session_id=SESSION, personal=personal))
        for e in golden_sealed_events()
    ]
    files = {
        EVENTS_FILE: b"\n".join(events) + b"\n",
        SNAPSHOT_FILE: encode_snapshot(golden_personal_state(), sealer),
        ARCHIVE_FILE: encode_record(seal_record(golden_archive_record(), sealer)),
    }
    existing = [p.name for p in files if p.exists()]
    if existing:
        print(f"refusing to overwrite {existing}: golden files are frozen", file=sys.stderr)
    for path, data in files.items():
        if not path.exists():
            path.write_bytes(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
