"""The PostgreSQL store's statements; ``{s}`` stands for the quoted schema.

Every write that must be atomic is one statement (data-modifying CTEs), so it is one
transaction and one round trip under autocommit.
"""

from __future__ import annotations

from typing import Final

from ._sql_rows import ARCHIVE_COLS, FOLLOWUP_COLS, SESSION_COLS

__all__ = ["ARCHIVE_COLS", "SESSION_COLS", "STATEMENTS"]

_ARCHIVE_SLOTS = ", ".join(["%s"] * len(ARCHIVE_COLS.split(",")))

_X_COLS: Final = ", ".join("x." + c.strip() for c in SESSION_COLS.split(","))

# the group commit's statement: the conditional update and the events (``_APPEND``),
# then, when a batch carries a snapshot, the snapshot and its parts (``_SNAPSHOTS``)
_APPEND: Final = """
        WITH b AS (
            SELECT * FROM unnest(%b::text[], %b::int8[], %b::int8[], %b::int8[], %b::int8[],
                                 %b::text[], %b::text[], %b::float8[], %b::int8[])
                AS b(session_id, epoch, first_seq, last_seq, skip, agent, status, lia, snap_seq)
        ), ok AS (
            UPDATE {s}.sessions AS s SET seq = b.last_seq,
                agent = CASE WHEN b.agent = '' THEN s.agent ELSE b.agent END,
                status = b.status,
                last_interaction_at = greatest(s.last_interaction_at, b.lia),
                snapshot_seq = CASE WHEN b.snap_seq > 0 THEN b.snap_seq ELSE s.snapshot_seq END
            FROM b WHERE s.session_id = b.session_id AND s.epoch = b.epoch
                AND s.seq = b.first_seq - 1 + b.skip
            RETURNING s.session_id
        ), ev AS (
            INSERT INTO {s}.events (session_id, seq, epoch, data)
            SELECT e.session_id, e.seq, e.epoch, e.data
            FROM unnest(%b::text[], %b::int8[], %b::int8[], %b::bytea[])
                AS e(session_id, seq, epoch, data)
            JOIN ok USING (session_id)
"""
_SNAPSHOTS: Final = """        ), sn AS (
            INSERT INTO {s}.snapshots (session_id, seq, data)
            SELECT x.session_id, x.seq, x.data
            FROM unnest(%b::text[], %b::int8[], %b::bytea[]) AS x(session_id, seq, data)
            JOIN ok USING (session_id)
            ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, data = excluded.data
        ), sp AS (
            INSERT INTO {s}.snapshot_parts (session_id, part, data)
            SELECT p.session_id, p.part, p.data
            FROM unnest(%b::text[], %b::int8[], %b::bytea[]) AS p(session_id, part, data)
            JOIN ok USING (session_id)
            ON CONFLICT (session_id, part) DO UPDATE SET data = excluded.data
"""
_RETURNING: Final = """        )
        SELECT session_id FROM ok
"""

STATEMENTS: Final[dict[str, str]] = {
    # The group commit. ``ok`` is the conditional update: a batch lands only if its row
    # still has its epoch and ends right before it (or, after ``skip`` events already
    # stored by an attempt whose reply was lost, right before the rest). The events and
    # snapshots (and snapshot parts) of the sessions it matched are inserted in the same
    # statement.
    "append": _APPEND + _SNAPSHOTS + _RETURNING,
    # the same without a snapshot (most appends): six parameters and two CTEs fewer
    "append_events": _APPEND + _RETURNING,
    "append_check": "SELECT session_id, epoch, seq FROM {s}.sessions WHERE session_id = ANY(%s)",
    "stored_events": (
        "SELECT data FROM {s}.events WHERE session_id = %s AND seq BETWEEN %s AND %s ORDER BY seq"
    ),
    "create": f"""
        WITH s AS (
            INSERT INTO {{s}}.sessions ({SESSION_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
            ON CONFLICT (session_id) DO NOTHING RETURNING session_id
        ), e AS (
            INSERT INTO {{s}}.events (session_id, seq, epoch, data)
            SELECT s.session_id, e.seq, %s, e.data
            FROM s, unnest(%b::int8[], %b::bytea[]) AS e(seq, data)
        ), x AS (
            INSERT INTO {{s}}.snapshots (session_id, seq, data)
            SELECT s.session_id, %s, d FROM s, unnest(%b::bytea[]) AS d
        ), p AS (
            INSERT INTO {{s}}.snapshot_parts (session_id, part, data)
            SELECT s.session_id, p.part, p.data FROM s, unnest(%b::int8[], %b::bytea[]) AS p(part, data)
        )
        SELECT count(*) FROM s
    """,
    "created_events": (
        "SELECT e.data FROM {s}.sessions x JOIN {s}.events e USING (session_id) "
        "WHERE x.session_id = %s AND x.epoch = %s ORDER BY e.seq LIMIT %s"
    ),
    # the session row (part NULL), then one row per snapshot part, in one statement (one
    # read snapshot): parts as rows, not an array_agg, which copies a long call's 2 MB
    # into one array on the server and splits it again here (about 3 ms at 10,000 events)
    "load": f"""
        SELECT NULL::bigint, {_X_COLS}, sn.data,
            coalesce((SELECT array_agg(e.data ORDER BY e.seq) FROM {{s}}.events e
                      WHERE e.session_id = x.session_id AND e.seq > coalesce(sn.seq, 0)), '{{}}')
        FROM {{s}}.sessions x LEFT JOIN {{s}}.snapshots sn USING (session_id)
        WHERE x.session_id = %s
        UNION ALL
        SELECT p.part, {", ".join(["NULL"] * len(_X_COLS.split(",")))}, p.data, NULL
        FROM {{s}}.snapshots sn JOIN {{s}}.snapshot_parts p USING (session_id)
        WHERE sn.session_id = %s
    """,
    "read_events": """
        SELECT coalesce((SELECT array_agg(e.data ORDER BY e.seq) FROM {s}.events e
                         WHERE e.session_id = x.session_id AND e.seq > %s), '{}')
        FROM {s}.sessions x WHERE x.session_id = %s
    """,
    "get": f"SELECT {SESSION_COLS} FROM {{s}}.sessions WHERE session_id = %s",
    "list_sessions": f"SELECT {SESSION_COLS} FROM {{s}}.sessions WHERE ",
    # the subselect reads the statement's snapshot: the stored epoch (and the id of the
    # claim that took it) when the update missed
    "claim": """
        WITH u AS (
            UPDATE {s}.sessions SET epoch = epoch + 1, lease_owner = %(owner)s,
                lease_until = %(until)s, claim_id = %(cid)s
            WHERE session_id = %(sid)s AND epoch = %(expected)s RETURNING epoch
        )
        SELECT (SELECT epoch FROM u), x.epoch, x.claim_id
        FROM (SELECT 1) AS one LEFT JOIN {s}.sessions x ON x.session_id = %(sid)s
    """,
    # a claim and its first batch in one statement (``claim(then=)``): the session row
    # takes the new epoch, lease and the batch's end only where it is at the expected
    # epoch and seq; the events go in only if it did
    "claim_then": """
        WITH c AS (
            UPDATE {s}.sessions AS s SET epoch = s.epoch + 1, lease_owner = %(owner)s,
                lease_until = %(until)s, claim_id = %(cid)s, seq = %(last)s,
                agent = CASE WHEN %(agent)s::text = '' THEN s.agent ELSE %(agent)s::text END,
                status = %(status)s::text,
                last_interaction_at = greatest(s.last_interaction_at, %(lia)s::float8)
            WHERE s.session_id = %(sid)s AND s.epoch = %(expected)s AND s.seq = %(after)s
            RETURNING s.epoch
        ), ev AS (
            INSERT INTO {s}.events (session_id, seq, epoch, data)
            SELECT %(sid)s, e.seq, c.epoch, e.data
            FROM c, unnest(%(seqs)b::int8[], %(data)b::bytea[]) AS e(seq, data)
        )
        SELECT epoch FROM c
    """,
    "claim_state": "SELECT epoch, claim_id, seq FROM {s}.sessions WHERE session_id = %s",
    "claimed_as": (
        "SELECT 1 FROM {s}.sessions WHERE session_id = %s AND epoch = %s AND claim_id = %s"
    ),
    "renew_leases": (
        "UPDATE {s}.sessions SET lease_until = %s "
        "WHERE session_id = ANY(%s) AND lease_owner = %s RETURNING session_id"
    ),
    "release_lease": (
        "UPDATE {s}.sessions SET lease_owner = NULL, lease_until = 0 "
        "WHERE session_id = %s AND lease_owner = %s"
    ),
    "purge": """
        WITH e AS (DELETE FROM {s}.events WHERE session_id = %(sid)s),
             x AS (DELETE FROM {s}.snapshots WHERE session_id = %(sid)s),
             p AS (DELETE FROM {s}.snapshot_parts WHERE session_id = %(sid)s),
             c AS (DELETE FROM {s}.callers WHERE session_id = %(sid)s)
        DELETE FROM {s}.sessions WHERE session_id = %(sid)s
    """,
    "index_caller": (
        "INSERT INTO {s}.callers (caller_hash, session_id, at) VALUES (%s, %s, %s) "
        "ON CONFLICT (caller_hash, session_id) DO UPDATE SET at = excluded.at"
    ),
    "lookup_caller": (
        "SELECT session_id, at FROM {s}.callers WHERE caller_hash = %s ORDER BY at DESC"
    ),
    "archive_insert": (
        f"INSERT INTO {{s}}.archive ({ARCHIVE_COLS}) VALUES ({_ARCHIVE_SLOTS}) "
        "ON CONFLICT (record_id) DO NOTHING RETURNING record_id"
    ),
    "archive_get": f"SELECT {ARCHIVE_COLS} FROM {{s}}.archive WHERE record_id = %s",
    "archive_list": f"SELECT {ARCHIVE_COLS} FROM {{s}}.archive WHERE ",
    # a pending follow-up is replaced whole; one past pending is left as it is
    "followup_put": (
        "INSERT INTO {s}.followups (followup_id, session_id, due_at, payload, status, "
        "claimed_by, claimed_until) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (followup_id) DO UPDATE SET session_id = excluded.session_id, "
        "due_at = excluded.due_at, payload = excluded.payload, status = excluded.status, "
        "claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until "
        "WHERE followups.status = 'pending'"
    ),
    # the cancel id lets a retry count what its lost attempt cancelled
    "followup_cancel": (
        "UPDATE {s}.followups SET status = 'cancelled', cancel_id = %(nonce)s "
        "WHERE session_id = %(sid)s AND (status = 'pending' "
        "OR (status = 'cancelled' AND cancel_id = %(nonce)s)) RETURNING 1"
    ),
    # SKIP LOCKED: racing claimers each take different rows instead of queueing; a retry
    # also takes back what this very call claimed before its reply was lost
    "followup_claim": """
        UPDATE {s}.followups f SET status = 'claimed', claimed_by = %(owner)s,
            claimed_until = %(until)s
        FROM (SELECT followup_id FROM {s}.followups
              WHERE (status = 'pending' AND due_at <= %(now)s)
                 OR (status = 'claimed' AND claimed_until <= %(now)s)
                 OR (%(retrying)s AND status = 'claimed' AND claimed_by = %(owner)s
                     AND claimed_until = %(until)s)
              ORDER BY due_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) c
        WHERE f.followup_id = c.followup_id
        RETURNING f.followup_id, f.session_id, f.due_at, f.payload
    """,
    "followup_done": (
        "UPDATE {s}.followups SET status = 'done' WHERE followup_id = %s "
        "AND claimed_by = %s AND (status = 'claimed' OR (%s AND status = 'done')) RETURNING 1"
    ),
    # a start counts once per claim: a retried start finds its claim already counted
    "followup_start": (
        "UPDATE {s}.followups SET attempts = attempts + CASE WHEN started_until IS NOT NULL "
        "AND started_until = claimed_until THEN 0 ELSE 1 END, "
        "started_until = claimed_until, updated_at = %(now)s "
        "WHERE followup_id = %(id)s AND status = 'claimed' AND claimed_by = %(owner)s "
        "RETURNING attempts"
    ),
    # a retry recognises its own settle: same owner, mark, time and target status
    "followup_settle": (
        "UPDATE {s}.followups SET status = %(status)s, "
        "due_at = COALESCE(%(retry_at)s::float8, due_at), mark = %(mark)s, "
        "last_error = %(error)s, updated_at = %(now)s "
        "WHERE followup_id = %(id)s AND claimed_by = %(owner)s AND (status = 'claimed' "
        "OR (%(retrying)s AND status = %(status)s AND mark = %(mark)s "
        "AND updated_at = %(now)s)) RETURNING 1"
    ),
    "followup_get": f"SELECT {FOLLOWUP_COLS} FROM {{s}}.followups WHERE followup_id = %s",
    "followup_list": f"SELECT {FOLLOWUP_COLS} FROM {{s}}.followups ORDER BY due_at DESC LIMIT %s",
    "followup_retry": (
        "UPDATE {s}.followups SET status = 'pending', mark = '', due_at = %(now)s, "
        "updated_at = %(now)s WHERE followup_id = %(id)s AND ((status = 'done' AND "
        "mark = 'dead') OR (status = 'pending' AND mark IN ('retrying', 'orphaned')) "
        "OR (%(retrying)s AND status = 'pending' AND mark = '' AND due_at = %(now)s "
        "AND updated_at = %(now)s)) RETURNING 1"
    ),
    "followup_record": (
        "INSERT INTO {s}.followup_runs (followup_id, session_id, data) VALUES (%s, %s, %s) "
        "ON CONFLICT (followup_id) DO NOTHING"
    ),
    "followup_runs": (
        "SELECT followup_id, session_id, data FROM {s}.followup_runs WHERE session_id = %s"
    ),
    "package_put": (
        "INSERT INTO {s}.packages (package_id, session_id, data, status, created_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (package_id) DO NOTHING RETURNING 1"
    ),
    "package_get": (
        "SELECT package_id, session_id, data, status, created_at FROM {s}.packages "
        "WHERE package_id = %s"
    ),
    # the transition id lets a retry recognise its own earlier transition
    "package_transition": (
        "UPDATE {s}.packages SET status = %(to)s, transition_id = %(nonce)s "
        "WHERE package_id = %(id)s AND (status = %(from)s "
        "OR (status = %(to)s AND transition_id = %(nonce)s)) RETURNING 1"
    ),
}
