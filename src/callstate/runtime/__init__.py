"""The runtime: one process's live sessions, below every capability.

``handle`` is the recording core of a live session (fold, queue, writability,
fencing, ``flush``), ``flusher`` the group commit that drains every handle's queue,
``host`` the services a keeper shares with its capabilities (store, clock, owner,
lease, emitting recovery events, the registry of live handles), ``clock`` the
injectable time source and ``options`` the validation of keeper options.
Capabilities (tools, archive, continuity, handoff) are written against these types,
never against ``Session`` or ``Keeper``.
"""
