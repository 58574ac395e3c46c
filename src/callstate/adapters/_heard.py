"""How much of an agent's reply the caller heard, from how much of its audio played."""

from __future__ import annotations

__all__ = ["heard_text"]


def heard_text(text: str, played_ms: int, total_ms: int) -> str:
    """The part of ``text`` spoken in the first ``played_ms`` of ``total_ms`` of audio.

    The transcript carries no timings, so this is proportional, cut back to a word
    boundary: an estimate that never claims more than was played.
    """
    if total_ms <= 0 or played_ms <= 0 or not text:
        return ""
    if played_ms >= total_ms:
        return text
    cut = len(text) * played_ms // total_ms
    if cut < len(text) and text[cut] != " ":
        space = text.rfind(" ", 0, cut)
        cut = space if space > 0 else 0
    return text[:cut].rstrip()
