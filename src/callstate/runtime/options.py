"""Validation of ``Keeper`` options: every bad value gets a ``ConfigError`` naming it."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..journal.limits import Limits

__all__ = ["check_options", "check_personal", "parse_secrets"]


def parse_secrets(secret: bytes | str | Sequence[bytes | str] | None) -> list[bytes]:
    """The signing keys, first one signing; each at least 16 bytes.

    Raises:
        ConfigError: a key is too short or not bytes/str.
    """
    if secret is None:
        return []
    if isinstance(secret, bytes | str):
        items: list[object] = [secret]
    elif isinstance(secret, Sequence):
        items = list(secret)
    else:
        msg = f"secret must be bytes, str or a sequence of them, got {type(secret).__name__}"
        raise ConfigError(msg)
    out = []
    for i, s in enumerate(items):
        b = s.encode() if isinstance(s, str) else s
        if not isinstance(b, bytes) or len(b) < 16:
            got = len(b) if isinstance(b, bytes) else type(b).__name__
            msg = f"secret[{i}] must be at least 16 bytes, got {got}"
            raise ConfigError(msg)
        out.append(b)
    return out


def check_personal(personal: object) -> tuple[str, ...]:
    """The userdata keys declared personal, checked.

    Raises:
        ConfigError: ``personal`` is not a sequence of strings.
    """
    if isinstance(personal, str) or not isinstance(personal, Sequence | set | frozenset):
        msg = f"personal must be a sequence of userdata keys, got {personal!r:.60}"
        raise ConfigError(msg)
    for i, key in enumerate(personal):
        if not isinstance(key, str):
            msg = f"personal[{i}] must be a str userdata key, got {key!r:.60}"
            raise ConfigError(msg)
    return tuple(personal)


def check_options(
    *,
    resume_window: float,
    lease_ttl: float,
    flush_timeout: float,
    handoff_timeout: float,
    token_ttl: float,
    snapshot_every: int,
    handoff_max_bytes: int,
    outbox_limit: int,
    sweep_every: float | None,
    purge_after: float,
    limits: object = None,
) -> None:
    """Refuse out-of-range keeper options.

    Raises:
        ConfigError: the message names the option and the value.
    """
    # `not x > 0` also refuses NaN, which compares false to everything
    for name, value in (
        ("resume_window", resume_window),
        ("lease_ttl", lease_ttl),
        ("flush_timeout", flush_timeout),
        ("handoff_timeout", handoff_timeout),
        ("token_ttl", token_ttl),
    ):
        if not value > 0:
            msg = f"{name} must be > 0 seconds, got {value!r}"
            raise ConfigError(msg)
    for name, count in (
        ("snapshot_every", snapshot_every),
        ("handoff_max_bytes", handoff_max_bytes),
        ("outbox_limit", outbox_limit),
    ):
        if count < 1:
            msg = f"{name} must be >= 1, got {count!r}"
            raise ConfigError(msg)
    if sweep_every is not None and not sweep_every >= 0:
        msg = f"sweep_every must be >= 0 seconds or None, got {sweep_every!r}"
        raise ConfigError(msg)
    if not purge_after >= 0:
        msg = f"purge_after must be >= 0 seconds, got {purge_after!r}"
        raise ConfigError(msg)
    if limits is not None and not isinstance(limits, Limits):
        msg = f"limits must be a callstate.Limits, got {type(limits).__name__}"
        raise ConfigError(msg)
