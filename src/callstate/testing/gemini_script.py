"""What the loopback Gemini Live server says: scripted model turns and typed server messages.

Every server message is built from ``google.genai.types.LiveServerMessage`` and sent in
its wire form (camelCase JSON), so its shape is the real one. A test queues ``Say`` and
``Call`` steps; each model turn (a ``clientContent`` with ``turnComplete``, caller
speech, a finished tool response) plays the next step.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

__all__ = ["BYTES_PER_MS", "Call", "Say", "Step", "next_id", "wire"]

#: pcm16 mono at 24 kHz, the Live API's output audio format
BYTES_PER_MS = 48

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    """A fresh server-side id such as ``call_12``."""
    return f"{prefix}_{next(_ids)}"


def wire(message: types.LiveServerMessage) -> str:
    """A server message as the API sends it: camelCase JSON, unset fields left out."""
    return json.dumps(message.model_dump(mode="json", by_alias=True, exclude_none=True))


@dataclass
class Say:
    """A spoken model turn: ``chunks`` audio chunks of ``audio_ms`` in all, each with its
    share of the output transcription.

    ``pause_after`` stops the stream after that many chunks until the test calls
    ``GeminiServer.resume()`` (or barges in, or drops the line): a turn caught mid-way.
    ``more`` goes on with the next step in the same model turn (a ``Call``, say).
    """

    text: str
    audio_ms: int = 600
    chunks: int = 3
    pause_after: int | None = None
    more: bool = False

    def pieces(self) -> list[str]:
        """The transcript split across the chunks on word boundaries (joined, it is ``text``)."""
        words = self.text.split(" ")
        n = max(1, min(self.chunks, len(words)))
        size = -(-len(words) // n)
        groups = [words[i : i + size] for i in range(0, len(words), size)]
        return [" ".join(g) + (" " if i < len(groups) - 1 else "") for i, g in enumerate(groups)]


@dataclass
class Call:
    """A model turn that asks for one function call and waits for its ``toolResponse``.

    ``args`` is sent as the call's ``args`` object; ``id`` defaults to a fresh one.
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


Step = Say | Call
