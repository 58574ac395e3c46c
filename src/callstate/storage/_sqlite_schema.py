"""The SQLite store's schema: versioned migrations and row converters."""

from __future__ import annotations

import sqlite3
import time
from typing import Final

from ..errors import StorageError
from .rollup import bin_of, hour_of

__all__ = ["MIGRATIONS", "migrate"]

#: Versioned schema migrations; each runs once, in order, inside a transaction.
MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
        CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            epoch INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            agent TEXT NOT NULL,
            status TEXT NOT NULL,
            caller_hash TEXT,
            created_at REAL NOT NULL,
            last_interaction_at REAL NOT NULL,
            lease_owner TEXT,
            lease_until REAL NOT NULL DEFAULT 0,
            snapshot_seq INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE INDEX sessions_interaction ON sessions (last_interaction_at);
        CREATE TABLE events (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE snapshots (
            session_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            data BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE callers (
            caller_hash TEXT NOT NULL,
            session_id TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (caller_hash, session_id)
        ) WITHOUT ROWID;
        CREATE TABLE archive (
            record_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            caller_hash TEXT,
            ended_at REAL NOT NULL,
            outcome TEXT NOT NULL,
            data BLOB NOT NULL
        );
        CREATE INDEX archive_session ON archive (session_id);
        CREATE INDEX archive_caller ON archive (caller_hash);
        CREATE INDEX archive_ended ON archive (ended_at);
        CREATE TRIGGER archive_no_update BEFORE UPDATE ON archive
            BEGIN SELECT RAISE(ABORT, 'callstate archive is insert-only'); END;
        CREATE TRIGGER archive_no_delete BEFORE DELETE ON archive
            BEGIN SELECT RAISE(ABORT, 'callstate archive is insert-only'); END;
        CREATE TABLE followups (
            followup_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            due_at REAL NOT NULL,
            payload BLOB NOT NULL,
            status TEXT NOT NULL,
            claimed_by TEXT,
            claimed_until REAL NOT NULL DEFAULT 0
        );
        CREATE INDEX followups_due ON followups (status, due_at);
        CREATE TABLE packages (
            package_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            data BLOB NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        """,
    ),
    (
        # a package's bytes live apart from its status: SQLite rewrites a whole row
        # (overflow pages too) on UPDATE, so a status change no longer copies the package
        2,
        """
        CREATE TABLE package_data (
            package_id TEXT PRIMARY KEY,
            data BLOB NOT NULL
        );
        INSERT INTO package_data (package_id, data) SELECT package_id, data FROM packages;
        ALTER TABLE packages DROP COLUMN data;
        """,
    ),
    (
        # the id of the claim that took the current epoch: a claim sent again with its
        # id (a retry) recognises its own earlier claim
        3,
        """
        ALTER TABLE sessions ADD COLUMN claim_id TEXT;
        """,
    ),
    (
        # what each follow-up did, insert-once and never purged (the archive's lifetime):
        # the next follow-up of the same call reads it
        4,
        """
        CREATE TABLE followup_runs (
            followup_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            data BLOB NOT NULL
        );
        CREATE INDEX followup_runs_session ON followup_runs (session_id);
        """,
    ),
    (
        # the follow-up ledger: attempts, the last error and the ledger's mark; the claim
        # a start last counted lets a retried start count once
        5,
        """
        ALTER TABLE followups ADD COLUMN mark TEXT NOT NULL DEFAULT '';
        ALTER TABLE followups ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE followups ADD COLUMN last_error TEXT;
        ALTER TABLE followups ADD COLUMN updated_at REAL NOT NULL DEFAULT 0;
        ALTER TABLE followups ADD COLUMN started_until REAL
        """,
    ),
    (
        # the parts a snapshot continues (format 4), each written once and replaced only
        # when it changed, so a long call's snapshots no longer rewrite its whole history
        6,
        """
        CREATE TABLE snapshot_parts (
            session_id TEXT NOT NULL,
            part INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (session_id, part)
        );
        """,
    ),
    (
        # what fleet figures count, per archived leg, under a covering index on the time
        # it closed: counting a window reads the index, never a record
        7,
        """
        ALTER TABLE archive ADD COLUMN closed_at REAL;
        ALTER TABLE archive ADD COLUMN health TEXT;
        ALTER TABLE archive ADD COLUMN tools INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE archive ADD COLUMN in_doubt INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE archive ADD COLUMN recover_s REAL;
        CREATE INDEX archive_figures ON archive (closed_at, health, tools, in_doubt, recover_s);
        """,
    ),
    (
        # fleet figures rolled up per hour of closed_at, kept in the archive insert's
        # transaction: a window reads its whole hours here and only its two edges raw;
        # the rows already archived are rolled up now
        8,
        """
        CREATE TABLE archive_rollup (
            hour INTEGER NOT NULL,
            health TEXT NOT NULL,
            legs INTEGER NOT NULL,
            tools INTEGER NOT NULL,
            in_doubt INTEGER NOT NULL,
            PRIMARY KEY (hour, health)
        );
        CREATE TABLE archive_recover_rollup (
            hour INTEGER NOT NULL,
            bin INTEGER NOT NULL,
            n INTEGER NOT NULL,
            worst REAL NOT NULL,
            PRIMARY KEY (hour, bin)
        );
        INSERT INTO archive_rollup
            SELECT callstate_hour(closed_at), coalesce(health, 'unknown'), count(*),
                sum(tools > 0), sum(in_doubt > 0)
            FROM archive WHERE closed_at IS NOT NULL GROUP BY 1, 2;
        INSERT INTO archive_recover_rollup
            SELECT callstate_hour(closed_at), callstate_bin(recover_s), count(*), max(recover_s)
            FROM archive WHERE closed_at IS NOT NULL AND recover_s IS NOT NULL GROUP BY 1, 2;
        """,
    ),
    (
        # a day level over the hourly rollup, so a long window reads its whole days, not
        # every hour's histogram; filled from the hours already rolled up
        9,
        """
        CREATE TABLE archive_rollup_day (
            day INTEGER NOT NULL,
            health TEXT NOT NULL,
            legs INTEGER NOT NULL,
            tools INTEGER NOT NULL,
            in_doubt INTEGER NOT NULL,
            PRIMARY KEY (day, health)
        );
        CREATE TABLE archive_recover_rollup_day (
            day INTEGER NOT NULL,
            bin INTEGER NOT NULL,
            n INTEGER NOT NULL,
            worst REAL NOT NULL,
            PRIMARY KEY (day, bin)
        );
        INSERT INTO archive_rollup_day
            SELECT hour / 24, health, sum(legs), sum(tools), sum(in_doubt)
            FROM archive_rollup GROUP BY 1, 2;
        INSERT INTO archive_recover_rollup_day
            SELECT hour / 24, bin, sum(n), max(worst) FROM archive_recover_rollup GROUP BY 1, 2;
        """,
    ),
    (
        # follow-up lag rolled up per hour and day it was due, kept in the settle's
        # transaction; the follow-ups already succeeded are rolled up now
        10,
        """
        CREATE TABLE followup_lag_rollup (
            hour INTEGER NOT NULL,
            bin INTEGER NOT NULL,
            n INTEGER NOT NULL,
            worst REAL NOT NULL,
            PRIMARY KEY (hour, bin)
        );
        CREATE TABLE followup_lag_rollup_day (
            day INTEGER NOT NULL,
            bin INTEGER NOT NULL,
            n INTEGER NOT NULL,
            worst REAL NOT NULL,
            PRIMARY KEY (day, bin)
        );
        INSERT INTO followup_lag_rollup
            SELECT callstate_hour(due_at), callstate_bin(updated_at - due_at), count(*),
                max(updated_at - due_at)
            FROM followups WHERE status = 'done' AND mark = 'succeeded' GROUP BY 1, 2;
        INSERT INTO followup_lag_rollup_day
            SELECT hour / 24, bin, sum(n), max(worst) FROM followup_lag_rollup GROUP BY 1, 2;
        """,
    ),
    (
        # sessions found by the minute of their last interaction, not its exact time: a
        # turn's commit then rewrites no index page unless the minute turned (the
        # exact time stays in its column, unindexed, and filters within the minute)
        11,
        """
        ALTER TABLE sessions ADD COLUMN interaction_minute INTEGER NOT NULL DEFAULT 0;
        UPDATE sessions SET interaction_minute = CAST(last_interaction_at / 60 AS INTEGER);
        DROP INDEX sessions_interaction;
        CREATE INDEX sessions_interaction_minute ON sessions (interaction_minute);
        CREATE TRIGGER sessions_minute_on_insert AFTER INSERT ON sessions BEGIN UPDATE sessions SET interaction_minute = CAST(new.last_interaction_at / 60 AS INTEGER) WHERE session_id = new.session_id; END;
        CREATE TRIGGER sessions_minute_on_update AFTER UPDATE OF last_interaction_at ON sessions WHEN CAST(new.last_interaction_at / 60 AS INTEGER) <> old.interaction_minute BEGIN UPDATE sessions SET interaction_minute = CAST(new.last_interaction_at / 60 AS INTEGER) WHERE session_id = new.session_id; END;
        """,
    ),
)


def register_functions(conn: sqlite3.Connection) -> None:
    """The functions migrations 8 and 10 roll existing rows up with."""
    conn.create_function("callstate_hour", 1, hour_of, deterministic=True)
    conn.create_function("callstate_bin", 1, bin_of, deterministic=True)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration not yet in ``callstate_migrations``, each in its own transaction.

    Raises:
        StorageError: the database was migrated by a newer callstate.
    """
    register_functions(conn)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS callstate_migrations "
        "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = {r[0] for r in conn.execute("SELECT version FROM callstate_migrations")}
    newest = max((v for v, _ in MIGRATIONS), default=0)
    if done and max(done) > newest:
        msg = (
            f"database schema version {max(done)} is newer than this callstate "
            f"supports ({newest}); upgrade callstate"
        )
        raise StorageError(msg)
    for version, script in MIGRATIONS:
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute(
                "SELECT 1 FROM callstate_migrations WHERE version = ?", (version,)
            ).fetchone():
                conn.rollback()  # another process migrated first
                continue
            for stmt in script.split(";\n"):  # trigger bodies hold "; " inline
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT INTO callstate_migrations VALUES (?, ?)", (version, time.time()))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
