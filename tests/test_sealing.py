"""Sealing: the cipher, its key rotation, tamper and misuse errors, the no-secret refusal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate import ConfigError, HandoffPackage, Keeper, SealError
from callstate.journal import events as ev
from callstate.journal.sealed import open_event, seal_event
from callstate.journal.snapshot import decode_state, encode_snapshot
from callstate.journal.state import fold
from callstate.keeper import restore_state
from callstate.sealing import SEAL_PREFIX, Sealer
from callstate.storage.base import Loaded, SessionRecord
from test_state import journals

OLD = b"the-old-secret-of-32-bytes-long!!"
NEW = b"the-new-secret-of-32-bytes-long!!"
NUMBER = "+15550001111"


# -- the cipher ------------------------------------------------------------------------


def test_a_sealed_value_opens_to_what_was_sealed_and_carries_its_key_id() -> None:
    """seal/open round-trip; the text names the sealing key and never holds the plaintext."""
    sealer = Sealer([NEW])
    sealed = sealer.seal(NUMBER.encode(), context="journal:s1")
    assert sealed.startswith(f"{SEAL_PREFIX}{sealer.key_id}.")
    assert NUMBER not in sealed
    assert NUMBER.encode() == sealer.open(sealed, context="journal:s1")


def test_every_seal_uses_a_fresh_nonce() -> None:
    """Sealing the same value twice gives two different texts (no equality leak)."""
    sealer = Sealer([NEW])
    assert sealer.seal(b"x", context="c") != sealer.seal(b"x", context="c")


def test_rotation_first_secret_seals_any_opens() -> None:
    """With [new, old], values sealed under old still open; new ones are sealed under new."""
    old_value = Sealer([OLD]).seal(b"v", context="c")
    rotated = Sealer([NEW, OLD])
    assert b"v" == rotated.open(old_value, context="c")
    assert rotated.seal(b"v", context="c").split(".")[1] == Sealer([NEW]).key_id
    assert Sealer([NEW]).key_id != Sealer([OLD]).key_id


def test_a_value_under_an_unknown_key_says_so() -> None:
    """A value sealed under a secret no longer configured raises SealError naming its key id."""
    sealed = Sealer([OLD]).seal(b"v", context="c")
    with pytest.raises(SealError, match=f"key id '{Sealer([OLD]).key_id}'"):
        Sealer([NEW]).open(sealed, context="c")


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda s: s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1], "does not authenticate"),
        (lambda s: s[: len(s) // 2], "does not authenticate|truncated"),
        (lambda s: s.replace(SEAL_PREFIX, "seal9."), "does not start with"),
        (lambda s: s + "!*", "not base64url"),
        (lambda s: s.rsplit(".", 1)[0] + ".AAAA", "truncated"),
    ],
)
def test_tampered_values_raise_seal_error(mangle: object, match: str) -> None:
    """A flipped, cut, re-prefixed or garbled sealed value raises SealError saying what failed."""
    sealer = Sealer([NEW])
    sealed = sealer.seal(b"+15550001111", context="c")
    with pytest.raises(SealError, match=match):
        sealer.open(mangle(sealed), context="c")  # type: ignore[operator]


def test_a_value_moved_to_another_context_does_not_open() -> None:
    """A sealed value copied into another session's record fails to authenticate."""
    sealer = Sealer([NEW])
    sealed = sealer.seal(b"v", context="journal:a")
    with pytest.raises(SealError, match="journal:b"):
        sealer.open(sealed, context="journal:b")


def test_a_sealer_needs_a_secret() -> None:
    """Sealer([]) is a ConfigError saying a secret is needed."""
    with pytest.raises(ConfigError, match="secret"):
        Sealer([])


# -- events and snapshots --------------------------------------------------------------


def test_a_sealed_start_event_holds_no_caller_and_reads_back_whole() -> None:
    """SessionStarted as stored: caller and personal keys sealed, format 2; opened: as recorded."""
    sealer = Sealer([NEW])
    started = ev.SessionStarted(
        seq=1,
        session_id="s1",
        agent="a",
        caller=NUMBER,
        userdata={"email": "e@x.org", "plan": "pro"},
        personal=["email"],
    )
    stored = ev.encode_event(seal_event(started, sealer, session_id="s1"))
    assert b"5550001111" not in stored
    assert b"e@x.org" not in stored
    assert b'"plan":"pro"' in stored
    decoded = ev.decode_event(stored)
    assert ev.SEALED_VERSION == decoded.v
    assert started == open_event(decoded, sealer, session_id="s1")
    with pytest.raises(SealError, match="no secret"):
        open_event(decoded, None, session_id="s1")


@given(events=journals(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_restore_of_a_sealed_store_equals_folding_everything(
    events: list[ev.Event], data: st.DataObject
) -> None:
    """Any journal sealed event by event (and its snapshot) restores to the plain fold."""
    sealer = Sealer([NEW, OLD])
    personal = data.draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3))
    k = data.draw(st.integers(min_value=0, max_value=len(events)))
    loaded = Loaded(
        record=SessionRecord(session_id="s", epoch=1, seq=len(events), snapshot_seq=k),
        snapshot=encode_snapshot(fold(events[:k]), sealer) if k else None,
        events=[
            ev.encode_event(seal_event(e, sealer, session_id="s", personal=personal))
            for e in events[k:]
        ],
    )
    assert fold(events) == restore_state(loaded, sealer)


def test_a_sealed_snapshot_holds_no_caller() -> None:
    """encode_snapshot with a sealer writes v4 holding no caller; decode needs the sealer."""
    state = fold([ev.SessionStarted(seq=1, session_id="s1", agent="a", caller=NUMBER)])
    data = encode_snapshot(state, Sealer([NEW]))
    assert 4 == msgspec.msgpack.decode(data)[0]
    assert b"5550001111" not in data
    assert NUMBER == decode_state(data, Sealer([OLD, NEW])).caller
    with pytest.raises(SealError):
        decode_state(data)


# -- the keeper ------------------------------------------------------------------------


async def test_no_secret_refuses_a_caller_saying_to_set_one() -> None:
    """Without a secret, start(caller=...) raises ConfigError naming secret and the opt-in."""
    async with Keeper("memory://", sweep_every=None) as k:
        with pytest.raises(ConfigError, match=r"secret=.*plaintext_callers=True") as exc:
            await k.start(caller=NUMBER)
        assert "5550001111" not in str(exc.value)
        with pytest.raises(ConfigError, match="personal userdata"):
            await k.start(personal={"email": "e@x.org"})
        s = await k.start(agent="web")  # a session without caller data needs no secret
        assert s.state.caller is None
    with pytest.raises(ConfigError, match=r"personal userdata \['email'\].*secret="):
        Keeper("memory://", personal=["email"])


@pytest.mark.parametrize("bad", ["email", 3, [1]])
def test_personal_must_name_userdata_keys(bad: object) -> None:
    """Keeper(personal=...) that is not a sequence of str keys is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="personal"):
        Keeper("memory://", secret=NEW, personal=bad)  # type: ignore[arg-type]


async def test_plaintext_callers_is_an_explicit_opt_in(tmp_path: Path) -> None:
    """Keeper(plaintext_callers=True) stores the caller as is, and resume_caller finds it."""
    url = f"sqlite:///{tmp_path}/plain.db"
    async with Keeper(url, plaintext_callers=True, sweep_every=None) as k:
        s = await k.start(caller=NUMBER)
        await s.flush()
    with sqlite3.connect(tmp_path / "plain.db") as db:
        rows = db.execute("SELECT data FROM events").fetchall()
    assert any(b"5550001111" in bytes(r[0]) for r in rows)
    async with Keeper(url, plaintext_callers=True, sweep_every=None) as k:
        back = await k.resume_caller(NUMBER)
        assert back is not None
        assert NUMBER == back.state.caller


async def test_plaintext_data_still_loads_under_a_secret(tmp_path: Path) -> None:
    """A store written in the clear resumes under a keeper with a secret; new data is sealed."""
    url = f"sqlite:///{tmp_path}/old.db"
    async with Keeper(url, plaintext_callers=True, sweep_every=None) as k:
        s = await k.start(caller=NUMBER, userdata={"plan": "pro"})
        s.user_said("hello")
        await s.flush()
    async with Keeper(url, secret=NEW, snapshot_every=1, sweep_every=None) as k:
        back = await k.resume(s.id)
        assert (NUMBER, {"plan": "pro"}) == (back.state.caller, back.state.userdata)
        back.user_said("still there")
        await back.flush()
    with sqlite3.connect(tmp_path / "old.db") as db:
        (snapshot,) = db.execute("SELECT data FROM snapshots").fetchone()
    assert b"5550001111" not in bytes(snapshot)


async def test_rotation_end_to_end_and_an_unknown_key_is_refused(tmp_path: Path) -> None:
    """Data sealed under the old secret resumes with [new, old]; with [new] alone it is refused."""
    url = f"sqlite:///{tmp_path}/rot.db"
    async with Keeper(url, secret=OLD, sweep_every=None) as k:
        s = await k.start(caller=NUMBER)
        await s.flush()
    async with Keeper(url, secret=[NEW, OLD], sweep_every=None) as k:
        assert NUMBER == (await k.load(s.id)).caller
        back = await k.resume_caller(NUMBER)
        assert back is not None
        assert NUMBER == back.state.caller
    async with Keeper(url, secret=NEW, sweep_every=None) as k:
        with pytest.raises(SealError, match=rf"session '{s.id}': event at seq 1.*key id"):
            await k.load(s.id)


async def test_a_tampered_stored_caller_is_a_seal_error(tmp_path: Path) -> None:
    """A sealed caller edited in the SQLite file makes load raise SealError naming the seq."""
    url = f"sqlite:///{tmp_path}/t.db"
    async with Keeper(url, secret=NEW, sweep_every=None) as k:
        s = await k.start(caller=NUMBER)
        await s.flush()
    with sqlite3.connect(tmp_path / "t.db") as db:
        (raw,) = db.execute("SELECT data FROM events WHERE seq = 1").fetchone()
        event = msgspec.json.decode(bytes(raw))
        body = event["sealed"]
        event["sealed"] = body[:-3] + ("xyz" if not body.endswith("xyz") else "abc")
        db.execute("UPDATE events SET data = ? WHERE seq = 1", (msgspec.json.encode(event),))
    async with Keeper(url, secret=NEW, sweep_every=None) as k:
        with pytest.raises(SealError, match=r"event at seq 1.*does not authenticate"):
            await k.load(s.id)


async def test_a_handoff_package_seals_the_caller_and_opens_for_the_target() -> None:
    """The package's bytes hold no caller; from_bytes with the secret (or an old one) reads it."""
    async with Keeper("memory://", secret=[NEW, OLD], sweep_every=None) as k:
        s = await k.start(caller=NUMBER, agent="triage", personal={"email": "e@x.org"})
        pkg = await s.handoff(to="billing")
        data = pkg.to_bytes()
        assert b"5550001111" not in data
        assert b"e@x.org" not in data
        opened = HandoffPackage.from_bytes(data, secret=[OLD, NEW])
        assert (NUMBER, "e@x.org") == (opened.caller, opened.userdata["email"])
        assert ["email"] == opened.to_state().personal
        assert NUMBER == (await k.accept(data)).state.caller
