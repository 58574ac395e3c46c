"""Constructor options shared by the stores: URL checks, URL query options, value checks.

Every malformed URL or option is refused when the store is made, with a
``ConfigError`` naming it, never later as a driver's ``ValueError`` on ``open()``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError
from .base import storable_text

__all__ = [
    "check_seconds",
    "check_server_options",
    "check_text",
    "check_url",
    "pop_url_option",
]


def check_text(value: object, field: str) -> str:
    """``value`` if it is a str a store can hold: no NUL and no lone surrogate.

    Raises:
        ConfigError: it is not a str, holds a NUL or is not encodable as UTF-8.
    """
    if not isinstance(value, str):
        msg = f"{field} must be a str, got {type(value).__name__} {value!r:.80}"
        raise ConfigError(msg)
    if not storable_text(value):
        msg = f"{field} holds a NUL or a lone surrogate: {value!r:.80}"
        raise ConfigError(msg)
    return value


def check_url(url: object, schemes: tuple[str, ...], *, port: bool = True) -> str:
    """``url`` if it is text with one of ``schemes`` and a well-formed host (and port,
    unless ``port`` is false: a multi-host URL has several).

    Raises:
        ConfigError: the message names the URL and what is wrong with it.
    """
    text = check_text(url, "store url")
    try:
        parts = urlsplit(text)
        if port:
            parts.port  # noqa: B018 -- reading it checks the port
    except ValueError as exc:
        msg = f"store url {text!r} is malformed: {exc}"
        raise ConfigError(msg) from exc
    if parts.scheme not in schemes:
        alternatives = " or ".join(f"{s}://" for s in schemes)
        msg = f"store url {text!r} must start with {alternatives}"
        raise ConfigError(msg)
    return text


def pop_url_option(
    url: str, schemes: tuple[str, ...], key: str, *, port: bool = True
) -> tuple[str, str | None]:
    """Split ``?key=value`` off ``url``; returns the URL without it and the value.

    Raises:
        ConfigError: the URL is malformed or its scheme is not one of ``schemes``.
    """
    text = check_url(url, schemes, port=port)
    parts = urlsplit(text)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if all(k != key for k, _ in query):
        return text, None
    value = next(v for k, v in query if k == key)
    rest = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != key])))
    if not parts.netloc:  # urlunsplit drops the "//" of an empty host: keep it
        rest = rest.replace(":", "://", 1)
    return rest, value


def check_seconds(**seconds: object) -> None:
    """Refuse durations that are not numbers > 0.

    Raises:
        ConfigError: the message names the option and the value.
    """
    for name, value in seconds.items():
        _seconds(name, value)


def _seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number of seconds, got {type(value).__name__} {value!r:.80}"
        raise ConfigError(msg)
    if not value > 0:  # also refuses NaN
        msg = f"{name} must be > 0 seconds, got {value!r}"
        raise ConfigError(msg)


def check_server_options(*, pool_size: object, **seconds: object) -> None:
    """Refuse a pool that is not an int >= 1, and durations that are not finite and > 0.

    Raises:
        ConfigError: the message names the option and the value.
    """
    check_seconds(**seconds)
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        msg = f"pool_size must be an int >= 1, got {pool_size!r:.80}"
        raise ConfigError(msg)
