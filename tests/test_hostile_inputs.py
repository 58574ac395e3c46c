"""Hostile input at the public entry points gets a typed CallstateError, never a raw one:
store URLs and options, stored bytes that do not decode, malleable tokens and package
signatures, session ids and callers no store can hold."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

import callstate
from callstate import (
    CodecError,
    ConfigError,
    HandoffFormatError,
    SessionNotFound,
    TokenError,
    open_store,
)
from callstate.archive.records import decode_record
from callstate.continuity.tokens import issue_token, verify_token
from callstate.journal.events import decode_event, decode_events
from callstate.journal.snapshot import decode_state
from callstate.storage.base import Store
from callstate.testing import FakeClock
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

SECRET = b"s" * 32


# -- open_store -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "names"),
    [
        (None, {}, "NoneType"),
        (b"sqlite:///x.db", {}, "bytes"),
        (42, {}, "int"),
        ("redis://[::1", {}, "Invalid IPv6 URL"),
        ("redis://[zz]:6379/0", {}, "zz"),
        ("postgresql://[::1:5432/test", {}, "Invalid IPv6 URL"),
        ("redis://localhost:99999/0", {}, "99999"),
        ("redis://localhost:port/0", {}, "port"),
        ("postgresql://localhost:port/test", {}, "'port'"),
        ("postgresql://localhost:70000/test", {}, "'70000'"),
        ("redis://localhost:6379/zero", {}, "zero"),
        ("redis://localhost:6379/0?pool_sise=3", {}, "pool_sise"),
        ("redis://localhost:6379/0?db=x", {}, "db"),
        ("postgresql://localhost/test?shema=x", {}, "shema"),
        ("postgresql://localhost/te%00st", {}, "%00"),
        ("sqlite:///a\x00b.db", {}, "NUL"),
        ("sqlite:///\ud800.db", {}, "surrogate"),
        ("redis://\udcff/0", {}, "surrogate"),
        ("redis://localhost/0", {"pool_size": "3"}, "pool_size"),
        ("redis://localhost/0", {"pool_size": None}, "pool_size"),
        ("redis://localhost/0", {"pool_size": True}, "pool_size"),
        ("postgresql://localhost/test", {"pool_size": 1.5}, "pool_size"),
        ("redis://localhost/0", {"timeout": "5"}, "timeout"),
        ("postgresql://localhost/test", {"retry_for": float("nan")}, "retry_for"),
        ("sqlite:///x.db", {"busy_timeout": "a"}, "busy_timeout"),
        ("sqlite:///x.db", {"bogus": 1}, "bogus"),
        ("redis://localhost/0", {"bogus": 1}, "bogus"),
        ("memory://", {"bogus": 1}, "bogus"),
        ("postgresql://localhost/test", {"schema": 3}, "schema"),
        ("redis://localhost/0", {"prefix": 3}, "prefix"),
    ],
)
def test_open_store_refuses_bad_urls_and_options(
    url: object, options: dict[str, object], names: str
) -> None:
    """A malformed URL or option value is a ConfigError naming it, when the store is made."""
    with pytest.raises(ConfigError) as info:
        open_store(url, **options)  # type: ignore[arg-type]
    assert names in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://",
        "postgresql://h1:5432,h2:5433/test",
        "postgresql://localhost/test?sslmode=disable&schema=s1",
        "rediss://localhost/0?ssl_cert_reqs=none",
        "redis://localhost:6379/3?prefix=app",
        "redis://[::1]:6379/0",
    ],
)
def test_open_store_keeps_accepting_good_urls(url: str) -> None:
    """The checks refuse nothing a driver accepts: multi-host, libpq and TLS options."""
    assert isinstance(open_store(url), Store)


def test_keeper_refuses_a_bad_store_url() -> None:
    """Keeper(store=...) goes through the same checks."""
    with pytest.raises(ConfigError, match="Invalid IPv6"):
        callstate.Keeper("redis://[::1/0")


# -- stored bytes that do not decode ---------------------------------------------------


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(
    "data",
    [
        "\ud800",
        '{"type":"user.turn","text":"\udc80"}',
        '{"type":"tool.succeeded","call_id":"c","result":' + _deep(5000) + "}",
        _deep(100_000),
        "{" * 50_000,
    ],
)
@pytest.mark.parametrize(
    "decode", [decode_event, decode_events, decode_state, decode_record], ids=lambda f: f.__name__
)
def test_decoders_raise_codec_errors_only(
    decode: Callable[[bytes | str], object], data: str
) -> None:
    """Lone surrogates and nesting deeper than the stack are CodecErrors, not Unicode or
    Recursion errors."""
    with pytest.raises(CodecError):
        decode(data)
    if data.isascii():
        with pytest.raises(CodecError):
            decode(data.encode())


# -- tokens and package signatures decode strictly ---------------------------------------


def _token() -> str:
    return issue_token(
        SECRET, session_id="sess-1", epoch=1, expires_at=2e9, issued_at=1e9, caller=None
    )


def _flip_unused_bits(part: str) -> str:
    # 32 bytes are 43 base64 chars: the last one carries 2 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return part[:-1] + alphabet[alphabet.index(part[-1]) ^ 1]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "=",
        lambda t: t + "==",
        lambda t: t + "!",
        lambda t: t + " ",
        lambda t: t + "\n",
        lambda t: t[:-1] + "+" + t[-1],
        lambda t: t[:10] + "=" + t[10:],
        lambda t: _flip_unused_bits(t),
        lambda t: t + "A",
        lambda t: t.replace(".", ".=", 1),
    ],
    ids=[
        "pad1",
        "pad2",
        "junk",
        "space",
        "newline",
        "plus",
        "pad-in-payload",
        "unused-bits",
        "extra-char",
        "pad-front",
    ],
)
def test_malleated_tokens_do_not_verify(mangle: Callable[[str], str]) -> None:
    """A token with padding, stray characters or set unused bits is a TokenError: one
    text per token."""
    token = _token()
    assert "sess-1" == verify_token(token, [SECRET]).session_id
    bad = mangle(token)
    assert token != bad
    with pytest.raises(TokenError):
        verify_token(bad, [SECRET])


async def test_malleated_token_preflight_is_invalid() -> None:
    """preflight answers `invalid` for a padded token of a live session."""
    async with callstate.Keeper("memory://", secret=SECRET, sweep_every=None) as k:
        s = await k.start()
        token = s.resume_token()
        assert "invalid" != (await k.preflight(token)).status
        assert "invalid" == (await k.preflight(token + "=")).status
        with pytest.raises(TokenError):
            await k.resume(token + "=")


async def test_malleated_package_signature_is_refused() -> None:
    """A handoff package whose `sig` is padded or has set unused bits does not verify."""
    async with callstate.Keeper("memory://", secret=SECRET, sweep_every=None) as k:
        s = await k.start(agent="a")
        pkg = await s.handoff(to="b")
        data = pkg.to_bytes()
        doc = json.loads(data)
        sig = doc["sig"]
        assert 32 == len(base64.urlsafe_b64decode(sig + "="))
        for bad in (sig + "=", _flip_unused_bits(sig), sig + "!"):
            doc["sig"] = bad
            with pytest.raises(HandoffFormatError, match="sig"):
                callstate.HandoffPackage.from_bytes(json.dumps(doc).encode(), secret=SECRET)
        assert "b" == (await k.accept(data)).state.agent


# -- ids and callers no store can hold ---------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], Store]]:
    """A factory of stores on one fresh namespace of each backend."""
    if request.param == "memory":
        store = callstate.MemoryStore()
        yield lambda: store
    elif request.param == "sqlite":
        yield lambda: open_store(f"sqlite:///{tmp_path}/h.db")
    elif request.param == "redis":
        from callstate.storage.redis import RedisStore

        url, prefix = redis_url(), unique("hostile")
        yield lambda: RedisStore(url, prefix=prefix)
        await drop_redis_prefix(url, prefix)
    else:
        from callstate.storage.postgres import PostgresStore

        url, schema = postgres_url(), unique("hostile")
        yield lambda: PostgresStore(url, schema=schema)
        await drop_pg_schema(url, schema)


UNSTORABLE = ["\ud800", "sess\udfff", "a\x00b", "\x00", "cs1\ud800"]


async def test_unstorable_ids_are_unknown_on_every_store(make_store: Callable[[], Store]) -> None:
    """A session id or caller with a lone surrogate or a NUL: preflight answers unknown
    (or invalid), resume raises a typed error, start refuses it; the store is unharmed."""
    async with callstate.Keeper(
        make_store(), secret=SECRET, clock=FakeClock(), sweep_every=None
    ) as k:
        s = await k.start(caller="+1555")
        s.user_said("hello")
        await s.flush()
        for bad in UNSTORABLE:
            pre = await k.preflight(bad)
            assert pre.status in ("unknown", "invalid"), (bad, pre)
            with pytest.raises(SessionNotFound):
                await k.resume(bad)
            assert "invalid" == (await k.preflight(s.resume_token(), caller=bad)).status
            with pytest.raises(TokenError):
                await k.resume(s.id, caller=bad)
            assert None is await k.resume_caller(bad)
            with pytest.raises(ConfigError):
                await k.start(session_id=bad)
            with pytest.raises(ConfigError):
                await k.start(caller=bad)
        assert "active" == (await k.preflight(s.resume_token())).status
    async with callstate.Keeper(
        make_store(), secret=SECRET, clock=FakeClock(), sweep_every=None
    ) as k2:
        s2 = await k2.resume(s.id)
        assert "hello" == s2.state.items[-1].text


def test_msgspec_still_fails_the_way_the_decoders_expect() -> None:
    """The raw failures the decoders translate are still raised by msgspec."""
    with pytest.raises(UnicodeEncodeError):
        msgspec.json.decode("\ud800")
    with pytest.raises(RecursionError):
        msgspec.json.decode(_deep(100_000))


async def test_unstorable_ids_elsewhere_are_typed(make_store: Callable[[], Store]) -> None:
    """load, accept, reclaim and the archive answer an id with a NUL or lone surrogate
    as unknown (a typed error or nothing found), on every store."""
    async with callstate.Keeper(
        make_store(), secret=SECRET, clock=FakeClock(), sweep_every=None
    ) as k:
        s = await k.start(caller="+1555")
        await s.end("done")
        for bad in UNSTORABLE:
            with pytest.raises(SessionNotFound):
                await k.load(bad)
            with pytest.raises(callstate.HandoffStateError):
                await k.accept(bad)
            with pytest.raises(callstate.HandoffStateError):
                await k.reclaim(bad)
            assert None is await k.archive.get(bad)
            assert [] == await k.archive.list(session_id=bad)
            assert [] == await k.archive.list(caller=bad)
        assert 1 == len(await k.archive.list(session_id=s.id))


@pytest.mark.parametrize("text", [b"\xff", 42, ["a"], None])
async def test_utterance_text_must_be_a_str(text: object) -> None:
    """user_said and agent_started refuse text that is not a str with a CodecError
    naming the field; nothing is recorded."""
    async with callstate.Keeper("memory://", secret=SECRET, sweep_every=None) as k:
        s = await k.start()
        seq = s.state.seq
        with pytest.raises(CodecError, match="text"):
            s.user_said(text)  # type: ignore[arg-type]
        with pytest.raises(CodecError, match="text"):
            s.agent_started(text)  # type: ignore[arg-type]
        assert seq == s.state.seq
        pkg = await s.handoff(to="b")
        assert "b" == (await k.accept(pkg.to_bytes())).state.agent
