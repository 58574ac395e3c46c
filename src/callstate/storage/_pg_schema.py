"""Versioned schema migrations of the PostgreSQL store (``{schema}`` is the quoted schema)."""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS"]

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
)
