"""Continuity: a session that outlives its connection and its process.

``tokens`` (signed resume tokens), ``plan`` (the resume rules, ``Preflight`` and the
pure ``RecoveryPlan``), ``ownership`` (create, restore, claim, heartbeat), ``resume``
(the checks behind preflight/resume/resume_caller), ``link`` (hold and the outbox while
the link is down) and ``sweep`` (stale sessions, expiry, purging, due follow-ups).
"""
