"""The error tree, and typed errors for corrupt or ill-typed input that never damage storage."""

from __future__ import annotations

import inspect
import math
import re
import sqlite3
from pathlib import Path

import pytest

import callstate
from callstate import (
    CallstateError,
    CodecError,
    ConfigError,
    Keeper,
    SessionNotFound,
    open_store,
)
from callstate import errors as errors_module
from callstate.testing import FakeClock

_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w+)(?:\s|$)")


def _tree() -> dict[str, str | None]:
    """``{class name: parent name}`` as drawn in errors.py's docstring."""
    doc = errors_module.__doc__
    assert doc is not None
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    lines = doc.splitlines()
    root = next(line for line in lines if line.strip() == "CallstateError")
    margin = root.index("CallstateError")
    for line in lines:
        drawn = line[margin:]
        if not drawn.lstrip(" ").startswith(("CallstateError", "├", "└", "│")):
            continue
        m = _TREE_LINE.match(drawn)
        assert m is not None, f"unparsable tree line: {line!r}"
        depth = len(m["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[m["name"]] = stack[-1][1] if stack else None
        stack.append((depth, m["name"]))
    return parents


def _error_classes() -> dict[str, type[CallstateError]]:
    return {
        name: cls
        for name, cls in vars(errors_module).items()
        if inspect.isclass(cls) and issubclass(cls, CallstateError)
    }


def test_every_error_class_is_drawn_in_the_tree() -> None:
    """Every CallstateError subclass in callstate.errors appears in the docstring tree, and vice versa."""
    assert sorted(_error_classes()) == sorted(_tree())


def test_tree_draws_the_real_parents() -> None:
    """Each class in the drawn tree derives directly from the parent it is drawn under."""
    classes = _error_classes()
    wrong = []
    for name, parent in _tree().items():
        if parent is None:
            continue
        bases = [b.__name__ for b in classes[name].__bases__ if issubclass(b, CallstateError)]
        if bases != [parent]:
            wrong.append(f"{name}: drawn under {parent}, derives from {bases}")
    assert [] == wrong
    assert _tree()["CallstateError"] is None


def test_every_error_is_public() -> None:
    """Every error class is in errors.__all__ and importable from ``callstate``."""
    names = sorted(_error_classes())
    assert names == sorted(n for n in errors_module.__all__ if n in names)
    assert [] == [n for n in names if getattr(callstate, n, None) is not _error_classes()[n]]


def test_errors_are_also_the_matching_builtin_kind() -> None:
    """Bad values are ValueErrors and missing things LookupErrors, for generic handlers."""
    assert issubclass(callstate.ConfigError, ValueError)
    assert issubclass(callstate.CodecError, ValueError)
    assert issubclass(callstate.SessionNotFound, LookupError)
    assert issubclass(callstate.UnknownTool, LookupError)
    assert issubclass(callstate.VersionError, callstate.CodecError)
    assert issubclass(callstate.ConflictError, callstate.StorageError)


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://db/callstate", "unknown store scheme 'mysql'"),
        ("callstate.db", "has no scheme"),
        ("", "has no scheme"),
        ("sqlite://callstate.db", "sqlite url"),
    ],
)
def test_open_store_bad_url(url: str, words: str) -> None:
    """open_store refuses an unknown or malformed URL with ConfigError naming it."""
    with pytest.raises(ConfigError, match=re.escape(words)) as exc:
        open_store(url)
    assert repr(url) in str(exc.value)


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"resume_window": 0}, "resume_window", "0"),
        ({"resume_window": -5.0}, "resume_window", "-5.0"),
        ({"resume_window": math.nan}, "resume_window", "nan"),
        ({"lease_ttl": 0.0}, "lease_ttl", "0.0"),
        ({"flush_timeout": -1}, "flush_timeout", "-1"),
        ({"snapshot_every": 0}, "snapshot_every", "0"),
        ({"secret": b"short"}, "secret[0]", "5"),
        ({"secret": [b"k" * 16, "short"]}, "secret[1]", "5"),
        ({"secret": 12345}, "secret", "int"),
        ({"store": 12345}, "store", "int"),
        ({"store": "bogus://x"}, "scheme", "'bogus'"),
    ],
)
def test_keeper_config_errors(kwargs: dict[str, object], field: str, value: str) -> None:
    """Bad Keeper arguments raise ConfigError naming the argument and the value."""
    kwargs = {"store": "memory://", **kwargs}
    with pytest.raises(ConfigError) as exc:
        Keeper(**kwargs)  # type: ignore[arg-type]
    assert field in str(exc.value)
    assert value in str(exc.value)


SECRET = b"errors-test-secret-32-bytes-long"

# -- corrupt storage --------------------------------------------------------------------


async def _two_sessions(url: str, clock: FakeClock) -> tuple[str, str]:
    async with Keeper(url, clock=clock, secret=SECRET) as keeper:
        a = await keeper.start(agent="triage", caller="+15550001")
        b = await keeper.start(agent="triage", caller="+15550002")
        for s in (a, b):
            s.user_said("I'd like to move my booking")
            u = s.agent_started("Sure, one moment")
            s.agent_finished(u)
            await s.flush()
        return a.id, b.id


def _rows(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def test_corrupt_event_row_names_session_and_seq(tmp_path: Path) -> None:
    """A garbage event row: CodecError naming session and seq; other sessions load; rows unchanged."""
    path = tmp_path / "cs.db"
    url = f"sqlite:///{path}"
    clock = FakeClock()
    bad, good = await _two_sessions(url, clock)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE events SET data = x'00ff7b2267617262' WHERE session_id = ? AND seq = 3", (bad,)
    )
    conn.close()
    before = _rows(path, "SELECT session_id, seq, epoch, data FROM events ORDER BY session_id, seq")
    async with Keeper(url, clock=clock, secret=SECRET) as keeper:
        with pytest.raises(CodecError) as exc:
            await keeper.load(bad)
        assert f"session {bad!r}" in str(exc.value)
        assert "seq 3" in str(exc.value)
        with pytest.raises(CodecError, match="seq 3"):
            await keeper.resume(bad)
        state = await keeper.load(good)
        assert (good, 4) == (state.session_id, state.seq)
        resumed = await keeper.resume(good)
        assert 2 == resumed.state.epoch
    after = _rows(
        path,
        "SELECT session_id, seq, epoch, data FROM events WHERE session_id = ? ORDER BY seq",
        bad,
    )
    assert [r for r in before if r[0] == bad] == after


async def test_ill_typed_event_row_names_the_field(tmp_path: Path) -> None:
    """A well-formed row with a wrong-typed field raises CodecError naming session, seq and field."""
    path = tmp_path / "cs.db"
    url = f"sqlite:///{path}"
    clock = FakeClock()
    bad, _ = await _two_sessions(url, clock)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE events SET data = CAST(? AS BLOB) WHERE session_id = ? AND seq = 2",
        ('{"type":"user.turn","seq":2,"text":["not","text"]}', bad),
    )
    conn.close()
    async with Keeper(url, clock=clock, secret=SECRET) as keeper:
        with pytest.raises(CodecError) as exc:
            await keeper.load(bad)
    message = str(exc.value)
    assert all(part in message for part in (repr(bad), "seq 2", "`$.text`"))


async def test_corrupt_snapshot_names_session_and_snapshot(tmp_path: Path) -> None:
    """A garbage snapshot row raises CodecError naming the session and the snapshot's seq."""
    path = tmp_path / "cs.db"
    url = f"sqlite:///{path}"
    clock = FakeClock()
    async with Keeper(url, clock=clock, secret=SECRET, snapshot_every=2) as keeper:
        s = await keeper.start(agent="triage")
        for i in range(4):
            s.user_said(f"turn {i}")
        await s.flush()
        sid = s.id
    snap_seq = _rows(path, "SELECT seq FROM snapshots WHERE session_id = ?", sid)[0][0]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE snapshots SET data = x'deadbeef' WHERE session_id = ?", (sid,))
    conn.close()
    async with Keeper(url, clock=clock, secret=SECRET) as keeper:
        with pytest.raises(CodecError) as exc:
            await keeper.load(sid)
    assert f"session {sid!r}: snapshot at seq {snap_seq}" in str(exc.value)


async def test_journal_gap_is_a_codec_error(tmp_path: Path) -> None:
    """A journal missing a seq is reported as such instead of folding a wrong state."""
    path = tmp_path / "cs.db"
    url = f"sqlite:///{path}"
    clock = FakeClock()
    sid, _ = await _two_sessions(url, clock)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM events WHERE session_id = ? AND seq = 2", (sid,))
    conn.close()
    async with Keeper(url, clock=clock, secret=SECRET) as keeper:
        with pytest.raises(CodecError, match="holds seq 3 where seq 2 belongs"):
            await keeper.load(sid)


async def test_unknown_session_is_named() -> None:
    """load and resume of an unknown id raise SessionNotFound carrying the id."""
    async with Keeper("memory://", clock=FakeClock()) as keeper:
        for call in (keeper.load, keeper.resume):
            with pytest.raises(SessionNotFound) as exc:
                await call("no-such-session")
            assert "no-such-session" == exc.value.session_id
            assert "'no-such-session'" in str(exc.value)


# -- ill-typed input on the hot path ----------------------------------------------------------


async def test_ill_typed_recording_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    """A wrong-typed value raises CodecError naming field and value, and changes nothing."""
    url = f"sqlite:///{tmp_path}/cs.db"
    async with Keeper(url, clock=FakeClock(), secret=SECRET) as keeper:
        s = await keeper.start(agent="triage")
        s.user_said("hello")
        with pytest.raises(CodecError) as exc:
            s.user_said(12345)  # type: ignore[arg-type]
        assert "`$.text`" in str(exc.value)
        assert "12345" in str(exc.value)
        with pytest.raises(CodecError, match=r"`\$\.set`"):
            s.update_userdata(when=object())
        assert 2 == s.state.seq
        assert {} == s.state.userdata
        s.user_said("still here")
        await s.flush()
        assert s.state == await keeper.load(s.id)
        assert 3 == (await keeper.load(s.id)).seq


def test_every_error_has_its_own_stable_code() -> None:
    """Each error class defines its own snake_case ``code``, distinct from every other."""
    classes = _error_classes()
    codes = {name: cls.__dict__.get("code") for name, cls in classes.items()}
    assert [] == [name for name, code in codes.items() if not isinstance(code, str)]
    assert [] == [c for c in codes.values() if not re.fullmatch(r"[a-z][a-z0-9_]*", str(c))]
    assert len(classes) == len(set(codes.values()))


def test_token_refusals_carry_their_codes() -> None:
    """The token refusals are TokenErrors with the codes a JSON API reports."""
    refusals = (callstate.TokenSuperseded, callstate.CallEnded, callstate.SessionActive)
    assert [("token_superseded", True), ("call_ended", True), ("session_active", True)] == [
        (cls.code, issubclass(cls, callstate.TokenError)) for cls in refusals
    ]
    exc = callstate.TokenSuperseded("old", session_id="s1", epoch=1, current_epoch=3)
    assert ("s1", 1, 3, "token_superseded") == (
        exc.session_id,
        exc.epoch,
        exc.current_epoch,
        exc.code,
    )
