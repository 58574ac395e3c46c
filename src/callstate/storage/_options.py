"""Constructor options shared by the server stores: URL query options and checks."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError

__all__ = ["check_server_options", "pop_url_option"]


def pop_url_option(url: str, schemes: tuple[str, ...], key: str) -> tuple[str, str | None]:
    """Split ``?key=value`` off ``url``; returns the URL without it and the value.

    Raises:
        ConfigError: the URL's scheme is not one of ``schemes``.
    """
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        alternatives = " or ".join(f"{s}://" for s in schemes)
        msg = f"store url {url!r} must start with {alternatives}"
        raise ConfigError(msg)
    query = parse_qsl(parts.query, keep_blank_values=True)
    value = next((v for k, v in query if k == key), None)
    rest = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != key])))
    return rest, value


def check_server_options(*, pool_size: int, **seconds: float) -> None:
    """Refuse a pool smaller than one connection, and durations that are not > 0.

    Raises:
        ConfigError: the message names the option and the value.
    """
    for name, value in seconds.items():
        if not value > 0:  # also refuses NaN
            msg = f"{name} must be > 0 seconds, got {value!r}"
            raise ConfigError(msg)
    if pool_size < 1:
        msg = f"pool_size must be >= 1, got {pool_size!r}"
        raise ConfigError(msg)
