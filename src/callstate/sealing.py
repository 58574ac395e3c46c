"""Sealing: caller data encrypted at rest (AES-256-GCM, keys derived from the secret).

Caller ids and the userdata keys an app declares personal never reach a store, a
snapshot, an archive record or a handoff package in the clear: they travel as one
*sealed* value, text of the form ``seal1.<kid>.<base64url(nonce | ciphertext | tag)>``.

- Keys: HKDF-SHA256 of each configured secret gives an AES-256-GCM key and a public
  4-byte key id (``kid``, 8 hex digits). The first secret seals; any configured secret
  opens (rotation, as for resume tokens): the ``kid`` says which one to use.
- Every value has a fresh random 96-bit nonce and is bound, as associated data, to its
  *context* (what it is and which session: ``"journal:<session id>"``), so a sealed
  value copied into another session or another kind of record does not open.
- A value that is malformed, tampered, bound to another context or sealed under a key
  not configured raises :class:`~callstate.errors.SealError`; so does one met by a
  reader without any secret.

What is sealed is a :class:`Personal`: the caller id and the personal userdata, as
JSON (no pickle, no types named in the data).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError, SealError

__all__ = [
    "SEAL_PREFIX",
    "Personal",
    "Sealer",
    "open_personal",
    "seal_personal",
    "split_personal",
]

#: Every sealed value starts with this (format 1 of the sealed text).
SEAL_PREFIX: Final = "seal1."
_SALT: Final = b"callstate-seal-v1"
_NONCE: Final = 12
_TAG: Final = 16
_AAD: Final = b"callstate-seal\x00"


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Personal(msgspec.Struct, frozen=True, kw_only=True):
    """What one sealed value holds: the caller id and the personal userdata."""

    caller: str | None = None
    userdata: dict[str, Any] = {}


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Personal)


class Sealer:
    """Seals and opens values with keys derived from the keeper's secrets.

    Args:
        secrets: the secrets, first one sealing, every one opening (at least one).

    Raises:
        ConfigError: ``secrets`` is empty.
    """

    __slots__ = ("_ciphers", "_seal_kid")

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            msg = "sealing needs at least one secret (Keeper(secret=...))"
            raise ConfigError(msg)
        self._ciphers: dict[str, AESGCM] = {}
        for secret in secrets:
            kid = _derive(secret, b"key id", 4).hex()
            self._ciphers.setdefault(kid, AESGCM(_derive(secret, b"aes-256-gcm key", 32)))
        self._seal_kid = _derive(secrets[0], b"key id", 4).hex()

    @property
    def key_id(self) -> str:
        """The public id of the key that seals (the first secret's)."""
        return self._seal_kid

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Encrypt ``plaintext`` bound to ``context``; returns the sealed text."""
        nonce = os.urandom(_NONCE)
        aad = _AAD + context.encode()
        body = self._ciphers[self._seal_kid].encrypt(nonce, plaintext, aad)
        return f"{SEAL_PREFIX}{self._seal_kid}.{_b64(nonce + body)}"

    def open(self, sealed: str, *, context: str) -> bytes:
        """Decrypt a value :meth:`seal` made for ``context``.

        Raises:
            SealError: malformed, tampered, sealed for another context, or under a key
                none of the configured secrets derive; the message says which.
        """
        if not isinstance(sealed, str) or not sealed.startswith(SEAL_PREFIX):
            msg = f"sealed value {sealed!r:.40} for {context!r} does not start with {SEAL_PREFIX!r}"
            raise SealError(msg)
        kid, _, text = sealed[len(SEAL_PREFIX) :].partition(".")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            msg = (
                f"sealed value for {context!r} was sealed under key id {kid!r:.20}, which no "
                "configured secret derives (add the old secret to Keeper(secret=[new, old]))"
            )
            raise SealError(msg)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            msg = f"sealed value for {context!r} is not base64url: {text!r:.40}"
            raise SealError(msg) from None
        if len(raw) < _NONCE + _TAG:
            msg = f"sealed value for {context!r} is truncated ({len(raw)} bytes)"
            raise SealError(msg)
        try:
            return cipher.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD + context.encode())
        except InvalidTag:
            msg = f"sealed value for {context!r} does not authenticate (tampered, or sealed for another record)"
            raise SealError(msg) from None


def split_personal(
    userdata: Mapping[str, Any], personal: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``userdata`` split into its plain keys and its personal ones."""
    keys = set(personal)
    plain = {k: v for k, v in userdata.items() if k not in keys}
    secret = {k: v for k, v in userdata.items() if k in keys}
    return plain, secret


def seal_personal(
    sealer: Sealer, *, caller: str | None, userdata: Mapping[str, Any], context: str
) -> str | None:
    """The sealed :class:`Personal` of ``caller`` and ``userdata``; None when both are empty."""
    if caller is None and not userdata:
        return None
    data = _encoder.encode(Personal(caller=caller, userdata=dict(userdata)))
    return sealer.seal(data, context=context)


def open_personal(sealer: Sealer | None, sealed: str, *, context: str) -> Personal:
    """Open a value :func:`seal_personal` made.

    Raises:
        SealError: no ``sealer`` (the reader has no secret), or the value does not open.
    """
    if sealer is None:
        msg = (
            f"{context!r} holds sealed caller data and this reader has no secret: "
            "create the Keeper with the secret that sealed it (Keeper(secret=...))"
        )
        raise SealError(msg)
    data = sealer.open(sealed, context=context)
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        msg = f"sealed value for {context!r} opened to something else: {exc}"
        raise SealError(msg) from exc
