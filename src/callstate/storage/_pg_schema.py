"""Versioned schema migrations of the PostgreSQL store (``{schema}`` is the quoted schema)."""

from __future__ import annotations

from typing import Final

from .rollup import DAY_HOURS, ROLLUP_S, SQL_BIN

__all__ = ["MIGRATIONS"]

_TOTALS = "r.legs + 1, tools = r.tools + excluded.tools, in_doubt = r.in_doubt + excluded.in_doubt"
_SAMPLE = "r.n + 1, worst = greatest(r.worst, excluded.worst)"


def _tables(name: str, key: str, cols: str) -> str:
    return "\n".join(
        f"CREATE TABLE {{schema}}.{name}{level} ({k} bigint NOT NULL, {cols}, PRIMARY KEY ({k}, {key}));"
        for level, k in (("", "hour"), ("_day", "day"))
    )


def _upserts(name: str, key: str, values: str, first: str, rest: str) -> str:
    return "\n".join(
        f"INSERT INTO {{schema}}.{name}{level} AS r VALUES ({at}, {values}) "
        f"ON CONFLICT ({k}, {key}) DO UPDATE SET {first} = {rest};"
        for level, k, at in (("", "hour", "h"), ("_day", "day", f"h / {DAY_HOURS}"))
    )


_LEGS = (
    "health text NOT NULL, legs bigint NOT NULL, tools bigint NOT NULL, in_doubt bigint NOT NULL"
)
_BINS = "bin integer NOT NULL, n bigint NOT NULL, worst double precision NOT NULL"
_LEG = "coalesce(NEW.health, 'unknown'), 1, (NEW.tools > 0)::int, (NEW.in_doubt > 0)::int"
_RECOVER = "{schema}.callstate_bin(NEW.recover_s), 1, NEW.recover_s"
_LAG = "{schema}.callstate_bin(lag), 1, lag"

# fleet figures rolled up per hour and day, kept by triggers in the writing statement's
# transaction (whatever writes the row, this callstate or an older one); the rows
# already there are rolled up under a lock that holds writers off until it commits
_ROLLUP: Final = f"""
        LOCK TABLE {{schema}}.archive, {{schema}}.followups IN SHARE ROW EXCLUSIVE MODE;
        {_tables("archive_rollup", "health", _LEGS)}
        {_tables("archive_recover_rollup", "bin", _BINS)}
        {_tables("followup_lag_rollup", "bin", _BINS)}
        CREATE FUNCTION {{schema}}.callstate_hour(t double precision) RETURNS bigint
            LANGUAGE sql IMMUTABLE AS $$
            SELECT CASE WHEN h * {ROLLUP_S} > t THEN h - 1
                        WHEN (h + 1) * {ROLLUP_S} <= t THEN h + 1 ELSE h END
            FROM (SELECT floor(t / {ROLLUP_S})::bigint AS h) x $$;
        CREATE FUNCTION {{schema}}.callstate_bin(s double precision) RETURNS integer
            LANGUAGE sql IMMUTABLE AS $$ SELECT {SQL_BIN.format(s="s")} $$;
        CREATE FUNCTION {{schema}}.archive_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE h bigint;
        BEGIN
            IF NEW.closed_at IS NULL THEN RETURN NULL; END IF;
            h := {{schema}}.callstate_hour(NEW.closed_at);
            {_upserts("archive_rollup", "health", _LEG, "legs", _TOTALS)}
            IF NEW.recover_s IS NOT NULL THEN
                {_upserts("archive_recover_rollup", "bin", _RECOVER, "n", _SAMPLE)}
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER archive_roll_up AFTER INSERT ON {{schema}}.archive
            FOR EACH ROW EXECUTE FUNCTION {{schema}}.archive_roll_up();
        CREATE FUNCTION {{schema}}.followup_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE h bigint; lag double precision;
        BEGIN
            h := {{schema}}.callstate_hour(NEW.due_at);
            lag := NEW.updated_at - NEW.due_at;
            {_upserts("followup_lag_rollup", "bin", _LAG, "n", _SAMPLE)}
            RETURN NULL;
        END $$;
        CREATE TRIGGER followup_roll_up AFTER UPDATE ON {{schema}}.followups
            FOR EACH ROW WHEN (NEW.status = 'done' AND NEW.mark = 'succeeded'
                AND NOT (OLD.status = 'done' AND OLD.mark = 'succeeded'))
            EXECUTE FUNCTION {{schema}}.followup_roll_up();
        CREATE TRIGGER followup_roll_up_new AFTER INSERT ON {{schema}}.followups
            FOR EACH ROW WHEN (NEW.status = 'done' AND NEW.mark = 'succeeded')
            EXECUTE FUNCTION {{schema}}.followup_roll_up();
        INSERT INTO {{schema}}.archive_rollup
            SELECT {{schema}}.callstate_hour(closed_at), coalesce(health, 'unknown'), count(*),
                count(*) FILTER (WHERE tools > 0), count(*) FILTER (WHERE in_doubt > 0)
            FROM {{schema}}.archive WHERE closed_at IS NOT NULL GROUP BY 1, 2;
        INSERT INTO {{schema}}.archive_recover_rollup
            SELECT {{schema}}.callstate_hour(closed_at), {{schema}}.callstate_bin(recover_s),
                count(*), max(recover_s)
            FROM {{schema}}.archive WHERE closed_at IS NOT NULL AND recover_s IS NOT NULL
            GROUP BY 1, 2;
        INSERT INTO {{schema}}.followup_lag_rollup
            SELECT {{schema}}.callstate_hour(due_at), {{schema}}.callstate_bin(updated_at - due_at),
                count(*), max(updated_at - due_at)
            FROM {{schema}}.followups WHERE status = 'done' AND mark = 'succeeded' GROUP BY 1, 2;
        INSERT INTO {{schema}}.archive_rollup_day
            SELECT hour / {DAY_HOURS}, health, sum(legs), sum(tools), sum(in_doubt)
            FROM {{schema}}.archive_rollup GROUP BY 1, 2;
        INSERT INTO {{schema}}.archive_recover_rollup_day
            SELECT hour / {DAY_HOURS}, bin, sum(n), max(worst)
            FROM {{schema}}.archive_recover_rollup GROUP BY 1, 2;
        INSERT INTO {{schema}}.followup_lag_rollup_day
            SELECT hour / {DAY_HOURS}, bin, sum(n), max(worst)
            FROM {{schema}}.followup_lag_rollup GROUP BY 1, 2;
"""

#: Each runs once, in order, in one transaction, under an advisory lock per schema.
MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
        CREATE TABLE {schema}.sessions (
            session_id text PRIMARY KEY,
            epoch bigint NOT NULL,
            seq bigint NOT NULL,
            agent text NOT NULL,
            status text NOT NULL,
            caller_hash text,
            created_at double precision NOT NULL,
            last_interaction_at double precision NOT NULL,
            lease_owner text,
            lease_until double precision NOT NULL DEFAULT 0,
            snapshot_seq bigint NOT NULL DEFAULT 0
        );
        CREATE INDEX sessions_interaction ON {schema}.sessions (last_interaction_at);
        CREATE INDEX sessions_lease ON {schema}.sessions (lease_until);
        CREATE TABLE {schema}.events (
            session_id text NOT NULL,
            seq bigint NOT NULL,
            epoch bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (session_id, seq)
        );
        CREATE TABLE {schema}.snapshots (
            session_id text PRIMARY KEY,
            seq bigint NOT NULL,
            data bytea NOT NULL
        );
        CREATE TABLE {schema}.callers (
            caller_hash text NOT NULL,
            session_id text NOT NULL,
            at double precision NOT NULL,
            PRIMARY KEY (caller_hash, session_id)
        );
        CREATE INDEX callers_session ON {schema}.callers (session_id);
        CREATE TABLE {schema}.archive (
            record_id text PRIMARY KEY,
            session_id text NOT NULL,
            caller_hash text,
            ended_at double precision NOT NULL,
            outcome text NOT NULL,
            data bytea NOT NULL
        );
        CREATE INDEX archive_session ON {schema}.archive (session_id, ended_at);
        CREATE INDEX archive_caller ON {schema}.archive (caller_hash, ended_at);
        CREATE INDEX archive_ended ON {schema}.archive (ended_at);
        CREATE FUNCTION {schema}.archive_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'callstate archive is insert-only: % refused on %', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        CREATE TRIGGER archive_no_update_delete BEFORE UPDATE OR DELETE ON {schema}.archive
            FOR EACH ROW EXECUTE FUNCTION {schema}.archive_insert_only();
        CREATE TRIGGER archive_no_truncate BEFORE TRUNCATE ON {schema}.archive
            FOR EACH STATEMENT EXECUTE FUNCTION {schema}.archive_insert_only();
        CREATE TABLE {schema}.followups (
            followup_id text PRIMARY KEY,
            session_id text NOT NULL,
            due_at double precision NOT NULL,
            payload bytea NOT NULL,
            status text NOT NULL,
            claimed_by text,
            claimed_until double precision NOT NULL DEFAULT 0
        );
        CREATE INDEX followups_due ON {schema}.followups (status, due_at);
        CREATE INDEX followups_session ON {schema}.followups (session_id);
        CREATE TABLE {schema}.packages (
            package_id text PRIMARY KEY,
            session_id text NOT NULL,
            data bytea NOT NULL,
            status text NOT NULL,
            created_at double precision NOT NULL,
            transition_id text
        );
        """,
    ),
    (
        # the id of the claim that took the current epoch, and of the call that cancelled
        # a follow-up: a retry whose first reply was lost recognises its own write by them
        2,
        """
        ALTER TABLE {schema}.sessions ADD COLUMN claim_id text;
        ALTER TABLE {schema}.followups ADD COLUMN cancel_id text;
        """,
    ),
    (
        # what each follow-up did, insert-once and never purged (the archive's lifetime):
        # the next follow-up of the same call reads it
        3,
        """
        CREATE TABLE {schema}.followup_runs (
            followup_id text PRIMARY KEY,
            session_id text NOT NULL,
            data bytea NOT NULL
        );
        CREATE INDEX followup_runs_session ON {schema}.followup_runs (session_id);
        """,
    ),
    (
        # the follow-up ledger: attempts, the last error and the ledger's mark; the claim
        # a start last counted lets a retried start count once
        4,
        """
        ALTER TABLE {schema}.followups ADD COLUMN mark text NOT NULL DEFAULT '',
            ADD COLUMN attempts integer NOT NULL DEFAULT 0,
            ADD COLUMN last_error text,
            ADD COLUMN updated_at double precision NOT NULL DEFAULT 0,
            ADD COLUMN started_until double precision;
        """,
    ),
    (
        # the parts a snapshot continues (format 4), each written once and replaced only
        # when it changed, so a long call's snapshots no longer rewrite its whole history
        5,
        """
        CREATE TABLE {schema}.snapshot_parts (
            session_id text NOT NULL,
            part bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (session_id, part)
        );
        """,
    ),
    (
        # what fleet figures count, per archived leg, under an index on the time it
        # closed that carries them: counting a window is an index-only scan
        6,
        """
        ALTER TABLE {schema}.archive ADD COLUMN closed_at double precision,
            ADD COLUMN health text,
            ADD COLUMN tools integer NOT NULL DEFAULT 0,
            ADD COLUMN in_doubt integer NOT NULL DEFAULT 0,
            ADD COLUMN recover_s double precision;
        CREATE INDEX archive_figures ON {schema}.archive (closed_at)
            INCLUDE (health, tools, in_doubt, recover_s);
        """,
    ),
    (7, _ROLLUP),
    (
        # sessions found by the minute of their last interaction, not its exact time: a
        # turn's update then changes no indexed column (until the minute turns), so it is
        # a heap-only (HOT) update that adds no index entries and leaves no index bloat
        8,
        """
        ALTER TABLE {schema}.sessions ADD COLUMN interaction_minute bigint
            GENERATED ALWAYS AS (trunc(last_interaction_at / 60)::bigint) STORED;
        DROP INDEX {schema}.sessions_interaction;
        CREATE INDEX sessions_interaction_minute ON {schema}.sessions (interaction_minute);
        """,
    ),
)
