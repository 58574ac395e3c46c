"""The journal: what a session is, as data. Pure: no I/O, no clock, no store.

Owns the typed events and their one codec (``events``), the fold that turns them into a
``SessionState`` (``state``), snapshots of that state (``snapshot``), and rendering a
state as OpenAI-format chat messages (``context``). Everything above reads and writes
sessions through these types; nothing here imports any other callstate package but
``errors``.
"""
