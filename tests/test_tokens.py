"""Resume tokens: compact, URL-safe, signed; every bad token is a TokenError."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstate import ConfigError, TokenError
from callstate.continuity.tokens import (
    MAX_TOKEN_CHARS,
    TOKEN_PREFIX,
    _sign,
    caller_binding,
    is_token,
    issue_token,
    verify_token,
)

KEY = b"k" * 32
OLD = b"o" * 32


def _token(key: bytes = KEY, caller: str | None = "+15551234567") -> str:
    return issue_token(
        key,
        session_id="sess-1",
        epoch=3,
        expires_at=1_700_000_600.0,
        issued_at=1_700_000_000.0,
        caller=caller,
    )


def test_token_round_trips_its_claims() -> None:
    """A token verifies under its key and carries session, epoch, expiry and binding."""
    claims = verify_token(_token(), [KEY])
    assert ("sess-1", 3, 1_700_000_600.0, 1_700_000_000.0, True, 0) == (
        claims.session_id,
        claims.epoch,
        claims.expires_at,
        claims.issued_at,
        claims.caller_bound,
        claims.key_index,
    )


def test_token_is_compact_url_safe_and_hides_the_caller() -> None:
    """A token is short, URL-safe, prefixed, and never contains the caller id."""
    token = _token()
    assert token.startswith(TOKEN_PREFIX)
    assert re.fullmatch(r"cs1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert len(token) < 160
    payload = base64.urlsafe_b64decode(token.split(".")[1] + "==")
    assert b"5551234567" not in payload


def test_caller_binding_matches_only_that_caller() -> None:
    """A bound token matches its caller and no other; an unbound one matches anyone."""
    bound = verify_token(_token(), [KEY])
    unbound = verify_token(_token(caller=None), [KEY])
    assert (True, False) == (
        bound.matches_caller("+15551234567", [KEY]),
        bound.matches_caller("+15550000000", [KEY]),
    )
    assert unbound.matches_caller("+15550000000", [KEY])


@pytest.mark.parametrize("part", [1, 2])
def test_tampered_token_is_refused(part: int) -> None:
    """Changing one character of the payload or the signature fails verification."""
    pieces = _token().split(".")
    chars = list(pieces[part])
    chars[5] = "A" if chars[5] != "A" else "B"
    pieces[part] = "".join(chars)
    with pytest.raises(TokenError, match=r"signature|payload"):
        verify_token(".".join(pieces), [KEY])


def test_wrong_secret_is_refused() -> None:
    """A token signed with a key the keeper does not hold names the signature."""
    with pytest.raises(TokenError, match="`signature` does not verify"):
        verify_token(_token(OLD), [KEY])


def test_rotation_accepts_every_configured_secret() -> None:
    """After rotation a token signed with the old key still verifies, as key index 1."""
    assert 1 == verify_token(_token(OLD), [KEY, OLD]).key_index
    bound = verify_token(_token(OLD), [KEY, OLD])
    assert bound.matches_caller("+15551234567", [KEY, OLD])


@pytest.mark.parametrize(
    ("token", "field"),
    [
        ("xyz.abc.def", "prefix"),
        ("cs1.onlytwo", "3 dot-separated parts"),
        ("cs1.a.b.c", "3 dot-separated parts"),
        ("cs1.abc.!!!", "signature"),
        ("cs1." + "a" * MAX_TOKEN_CHARS, "cap"),
        ("cs1.é.abc", "non-ASCII"),
    ],
)
def test_malformed_tokens_name_what_failed(token: str, field: str) -> None:
    """Malformed tokens raise TokenError naming the part that failed."""
    with pytest.raises(TokenError, match=re.escape(field)):
        verify_token(token, [KEY])


def test_signed_garbage_payload_is_refused() -> None:
    """A correctly signed payload that is not a claims array is still a TokenError."""
    body = TOKEN_PREFIX + base64.urlsafe_b64encode(b"\x93\x01\x02\x03").rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(_sign(KEY, body)).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="`payload` does not decode"):
        verify_token(f"{body}.{sig}", [KEY])


def test_no_secret_is_a_config_error() -> None:
    """Verifying or issuing without a secret is a ConfigError that says to pass one."""
    with pytest.raises(ConfigError, match=r"Keeper\(secret=...\)"):
        verify_token(_token(), [])
    with pytest.raises(ConfigError, match=r"Keeper\(secret=...\)"):
        _token(key=b"")


def test_is_token_tells_tokens_from_session_ids() -> None:
    """Tokens have the fixed prefix; plain session ids do not."""
    assert (True, False) == (is_token(_token()), is_token("3f2a9c"))


def test_binding_is_a_keyed_hash() -> None:
    """The binding depends on the key, so it cannot be computed without the secret."""
    assert caller_binding(KEY, "+1555") != caller_binding(OLD, "+1555")


@settings(max_examples=500)
@given(st.text(max_size=300) | st.builds(lambda s: TOKEN_PREFIX + s, st.text(max_size=300)))
def test_arbitrary_strings_only_ever_raise_token_error(text: str) -> None:
    """Any string that is not a real token raises TokenError and nothing else."""
    with pytest.raises(TokenError):
        verify_token(text, [KEY])
