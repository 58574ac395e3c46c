"""Resume tokens: compact, URL-safe, HMAC-SHA256-signed claims to resume one session.

A token is ``cs1.<payload>.<signature>``: ``payload`` is the base64url of a msgpack
array ``[session_id, epoch, expires_at, issued_at, caller_binding]`` and
``signature`` the base64url HMAC-SHA256 of ``"cs1." + payload`` under the keeper's
first secret. Verification accepts any configured secret (rotation), compares in
constant time, and only then decodes the payload. Session ids may not start with the
``cs1.`` prefix, so a token and a session id can never be confused.

The caller binding is a keyed hash of the caller id (never the id itself), so a token
handed to a browser does not reveal the phone number it is bound to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Final

import msgspec

from ..errors import ConfigError, TokenError

__all__ = [
    "MAX_TOKEN_CHARS",
    "TOKEN_PREFIX",
    "TokenClaims",
    "is_token",
    "issue_token",
    "verify_token",
]

TOKEN_PREFIX: Final = "cs1."
#: Longer strings are refused before any decoding.
MAX_TOKEN_CHARS: Final = 2048
_BINDING_BYTES: Final = 16
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


class _Claims(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    s: str  # session id
    e: int  # epoch the token was issued at
    x: int  # expires at, unix seconds
    i: int  # issued at, unix seconds
    c: bytes | None = None  # caller binding: keyed hash of the caller id


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Claims)


class TokenClaims(msgspec.Struct, frozen=True, kw_only=True):
    """What a verified token says. ``key_index`` is the secret that verified it."""

    session_id: str
    epoch: int
    expires_at: float
    issued_at: float
    caller_bound: bool
    key_index: int
    binding: bytes | None = None

    def matches_caller(self, caller: str, secrets: Sequence[bytes]) -> bool:
        """True when the token is unbound or bound to ``caller``."""
        if self.binding is None:
            return True
        expected = caller_binding(secrets[self.key_index], caller)
        return hmac.compare_digest(expected, self.binding)


def is_token(value: str) -> bool:
    """True when ``value`` has the shape of a resume token rather than a session id."""
    return value.startswith(TOKEN_PREFIX)


def caller_binding(key: bytes, caller: str) -> bytes:
    """The keyed hash a token carries in place of the caller id."""
    return hmac.new(key, b"callstate-token-caller\x00" + caller.encode(), hashlib.sha256).digest()[
        :_BINDING_BYTES
    ]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, field: str) -> bytes:
    # canonical unpadded base64url only: no "=", no stray characters, no set unused
    # bits, so exactly one text stands for each value (a token is not malleable)
    raw = b""
    if _B64URL.fullmatch(text) and len(text) % 4 != 1:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raw = b""
    if _b64(raw) != text:
        msg = f"resume token `{field}` is not canonical unpadded base64url ({len(text)} chars)"
        raise TokenError(msg)
    return raw


def _sign(key: bytes, body: str) -> bytes:
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()


def issue_token(
    secret: bytes,
    *,
    session_id: str,
    epoch: int,
    expires_at: float,
    issued_at: float,
    caller: str | None = None,
) -> str:
    """Sign a token for ``session_id`` at ``epoch``, valid until ``expires_at``.

    Raises:
        ConfigError: ``secret`` is empty.
    """
    if not secret:
        msg = "a resume token needs a secret: pass Keeper(secret=...)"
        raise ConfigError(msg)
    claims = _Claims(
        s=session_id,
        e=epoch,
        x=int(expires_at),
        i=int(issued_at),
        c=None if caller is None else caller_binding(secret, caller),
    )
    body = TOKEN_PREFIX + _b64(_encoder.encode(claims))
    return f"{body}.{_b64(_sign(secret, body))}"


def verify_token(token: str, secrets: Sequence[bytes]) -> TokenClaims:
    """Check a token's shape and signature, then decode its claims.

    Expiry is not checked here: the caller compares ``expires_at`` with its clock.

    Raises:
        ConfigError: no secret is configured, so no token can verify.
        TokenError: the token is malformed, too long, or its signature does not verify
            under any configured secret; the message names the part that failed.
    """
    if not secrets:
        msg = "resume tokens need a secret: pass Keeper(secret=...) to verify them"
        raise ConfigError(msg)
    if not isinstance(token, str):
        msg = f"resume token must be a str, got {type(token).__name__}"
        raise TokenError(msg)
    if len(token) > MAX_TOKEN_CHARS:
        msg = f"resume token is {len(token)} chars, over the {MAX_TOKEN_CHARS}-char cap"
        raise TokenError(msg)
    if not is_token(token):
        msg = f"resume token `prefix` must be {TOKEN_PREFIX!r}, got {token[:4]!r}"
        raise TokenError(msg)
    body, dot, sig_text = token.rpartition(".")
    if not dot or body == TOKEN_PREFIX.rstrip(".") or "." in body[len(TOKEN_PREFIX) :]:
        msg = "resume token must have 3 dot-separated parts: `prefix`, `payload`, `signature`"
        raise TokenError(msg)
    try:
        body.encode("ascii")
    except UnicodeEncodeError as exc:
        msg = "resume token `payload` holds non-ASCII characters"
        raise TokenError(msg) from exc
    sig = _unb64(sig_text, "signature")
    key_index = next(
        (i for i, key in enumerate(secrets) if hmac.compare_digest(_sign(key, body), sig)), None
    )
    if key_index is None:
        msg = (
            f"resume token `signature` does not verify under any of the {len(secrets)} "
            "configured secret(s): tampered, or signed with another key"
        )
        raise TokenError(msg)
    raw = _unb64(body[len(TOKEN_PREFIX) :], "payload")
    try:
        claims = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        msg = f"resume token `payload` does not decode: {exc}"
        raise TokenError(msg) from exc
    if not claims.s or claims.e < 1:
        msg = f"resume token `payload` names session {claims.s!r} at epoch {claims.e}"
        raise TokenError(msg)
    return TokenClaims(
        session_id=claims.s,
        epoch=claims.e,
        expires_at=float(claims.x),
        issued_at=float(claims.i),
        caller_bound=claims.c is not None,
        key_index=key_index,
        binding=claims.c,
    )
