"""Write the golden files of snapshot format 4 (run once; it never overwrites).

``snapshot_v4.msgpack`` is the head of a format-4 snapshot of :func:`parted_state` (the
golden session of ``make_golden`` grown to 70 items and 20 calls) and
``snapshot_v4_parts.msgpack`` the parts it continues, a MessagePack map of part number to
bytes. Once written they are frozen: ``tests/test_snapshot_parts.py`` checks that they
keep decoding to exactly :func:`parted_state`.

    python tests/golden/make_parted_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).parent))

import make_golden

from callstate.journal.snapshot import StoredParts, encode_parted
from callstate.journal.state import Item, SessionState, ToolCall

HERE = Path(__file__).parent
HEAD_FILE = HERE / "snapshot_v4.msgpack"
PARTS_FILE = HERE / "snapshot_v4_parts.msgpack"
T = make_golden.T


def parted_state() -> SessionState:
    """The golden state with enough items and calls to fill parts (2 item parts, 2 call parts)."""
    state = make_golden.golden_state()
    for i in range(64):
        kind = "user" if i % 2 else "assistant"
        text = f"turn {i}: the booking moves to {8 + i % 12}:00, ünïcode ✓"
        state.items.append(Item(kind=kind, id=f"u{100 + i}", text=text, at=T + 10 + i, done=True))
    for i in range(19):
        cid = f"c{100 + i}"
        state.calls[cid] = ToolCall(
            call_id=cid,
            name="check_availability",
            args={"date": f"2026-12-{1 + i:02d}"},
            status="succeeded",
            result={"slots": [f"{8 + i % 12}:00", f"{9 + i % 12}:30"], "n": i},
            requested_at=T + 20 + i,
            finished_at=T + 21 + i,
        )
    return state


def main() -> int:
    """Write each golden file that does not exist yet; never overwrite one."""
    head, parts, _ = encode_parted(parted_state(), None, StoredParts())
    files = {HEAD_FILE: head, PARTS_FILE: msgspec.msgpack.encode(parts)}
    missing = {path: data for path, data in files.items() if not path.exists()}
    if not missing:
        names = ", ".join(p.name for p in files)
        print(f"refusing to overwrite {names}: golden files are frozen", file=sys.stderr)
        return 1
    for path, data in missing.items():
        path.write_bytes(data)
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
