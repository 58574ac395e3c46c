"""Audio arithmetic for truncation: how much audio arrived, and what of it was heard."""

from __future__ import annotations

from typing import Any

__all__ = ["bytes_per_ms", "delta_ms"]


def bytes_per_ms(config: dict[str, Any]) -> int:
    """Bytes of output audio per millisecond for a session config.

    ``audio/pcm`` is 16-bit mono at 24 kHz (48 bytes/ms, the default); G.711
    (``audio/pcmu``, ``audio/pcma``) is 8-bit at 8 kHz (8 bytes/ms).
    """
    fmt = ((config.get("audio") or {}).get("output") or {}).get("format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    return 8 if kind in ("audio/pcmu", "audio/pcma") else 48


def delta_ms(b64: str, per_ms: int) -> int:
    """Milliseconds of audio in one base64 ``response.output_audio.delta``."""
    raw = len(b64) * 3 // 4 - b64[-2:].count("=")
    return raw // per_ms
