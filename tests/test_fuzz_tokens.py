"""Fuzzing resume tokens and session ids: verify_token raises only TokenError;
keeper.preflight never raises and keeper.resume raises only a CallstateError, on the
memory and SQLite stores (the bulk) and on Redis and PostgreSQL (a sample)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import strategies as st

import callstate
from callstate import TokenError
from callstate.continuity.tokens import issue_token, verify_token
from callstate.storage.base import Store
from callstate.testing import FakeClock
from fuzzing import EXAMPLES, SAMPLE, any_char, fuzz, hostile_text
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

SECRET = b"fuzz-token-secret-0123456789abcdef"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TOKEN = issue_token(
    SECRET, session_id="sess-1", epoch=1, expires_at=4e9, issued_at=1e9, caller="+1555"
)


@st.composite
def mutated_tokens(draw: st.DrawFn, token: str) -> str:
    """``token`` with characters inserted, removed, replaced, padded or flipped."""
    text = token
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        i = draw(st.integers(min_value=0, max_value=len(text)))
        match draw(st.sampled_from(["insert", "delete", "replace", "pad", "flip", "cut"])):
            case "insert":
                text = text[:i] + draw(st.text(any_char, min_size=1, max_size=3)) + text[i:]
            case "delete":
                text = text[:i] + text[i + 1 :]
            case "replace":
                text = (
                    text[:i]
                    + draw(st.sampled_from([*B64, "=", ".", "\x00", "\ud800"]))
                    + text[i + 1 :]
                )
            case "pad":
                text += draw(st.sampled_from(["=", "==", "===", " ", "\n", "!", "~"]))
            case "flip" if i < len(text) and text[i] in B64:
                text = (
                    text[:i]
                    + B64[B64.index(text[i]) ^ draw(st.sampled_from([1, 2, 3]))]
                    + text[i + 1 :]
                )
            case _:
                text = text[:i]
    return text


def token_inputs(token: str) -> st.SearchStrategy[str]:
    """Hostile strings: mutations of ``token``, token-shaped junk, anything."""
    return st.one_of(
        mutated_tokens(token),
        st.builds(
            lambda a, b: f"cs1.{a}.{b}",
            st.text(B64 + "=.", max_size=60),
            st.text(B64 + "=", max_size=50),
        ),
        hostile_text,
        st.text(any_char, max_size=300),
        st.integers(min_value=2040, max_value=2100).map(lambda n: "cs1." + "A" * n),
    )


def test_verify_token_raises_only_token_errors() -> None:
    """On >= EXAMPLES hostile strings verify_token returns claims or raises TokenError;
    only the unchanged token verifies."""

    def check(text: str) -> None:
        try:
            claims = verify_token(text, [SECRET])
        except TokenError:
            return
        assert text == TOKEN
        assert "sess-1" == claims.session_id

    assert fuzz(token_inputs(TOKEN), check, EXAMPLES) >= EXAMPLES


STATUSES = {"resumable", "expired", "unknown", "invalid", "ended", "superseded", "active"}


class Target:
    """A keeper with one live session, driven from sync hypothesis cases."""

    def __init__(self, runner: asyncio.Runner, keeper: callstate.Keeper, token: str) -> None:
        self.runner = runner
        self.keeper = keeper
        self.token = token

    def check(self, text: str) -> None:
        """preflight answers, resume raises only CallstateError; either way no raw error."""
        pre = self.runner.run(self.keeper.preflight(text))
        assert pre.status in STATUSES
        if pre.status in ("resumable", "active"):
            return  # taking it over would only end the session under test
        with pytest.raises(callstate.CallstateError):
            self.runner.run(self.keeper.resume(text))


def _target(make: Callable[[], Store]) -> Iterator[Target]:
    with asyncio.Runner() as runner:
        keeper = callstate.Keeper(make(), secret=SECRET, clock=FakeClock(), sweep_every=None)
        runner.run(keeper.open())
        try:
            s = runner.run(keeper.start(caller="+1555"))
            yield Target(runner, keeper, s.resume_token())
        finally:
            runner.run(keeper.close())


@pytest.fixture
def memory() -> Iterator[Target]:
    """A keeper on the memory store."""
    yield from _target(callstate.MemoryStore)


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Target]:
    """A keeper on a SQLite file."""
    yield from _target(lambda: callstate.open_store(f"sqlite:///{tmp_path}/fuzz.db"))


def test_preflight_and_resume_on_memory(memory: Target) -> None:
    """>= EXAMPLES hostile tokens and ids against a live session in memory."""
    assert fuzz(token_inputs(memory.token), memory.check, EXAMPLES) >= EXAMPLES
    assert "active" == memory.runner.run(memory.keeper.preflight(memory.token)).status


def test_preflight_and_resume_on_sqlite(sqlite: Target) -> None:
    """Hostile tokens and ids against a live session on SQLite."""
    n = max(1, EXAMPLES // 5)
    assert fuzz(token_inputs(sqlite.token), sqlite.check, n) >= n
    assert "active" == sqlite.runner.run(sqlite.keeper.preflight(sqlite.token)).status


@pytest.mark.services
@pytest.mark.parametrize("engine", ["redis", "postgres"])
def test_preflight_and_resume_on_servers(engine: str) -> None:
    """A sample of hostile tokens and ids against a live session on Redis and PostgreSQL."""
    if engine == "redis":
        from callstate.storage.redis import RedisStore

        url, prefix = redis_url(), unique("fuzz")
        make: Callable[[], Store] = lambda: RedisStore(url, prefix=prefix)  # noqa: E731
        cleanup = drop_redis_prefix(url, prefix)
    else:
        from callstate.storage.postgres import PostgresStore

        url, schema = postgres_url(), unique("fuzz")
        make = lambda: PostgresStore(url, schema=schema)  # noqa: E731
        cleanup = drop_pg_schema(url, schema)
    try:
        for target in _target(make):
            assert fuzz(token_inputs(target.token), target.check, SAMPLE) >= SAMPLE
            assert "active" == target.runner.run(target.keeper.preflight(target.token)).status
    finally:
        asyncio.run(cleanup)
