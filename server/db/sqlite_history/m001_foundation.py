from __future__ import annotations

import sqlite_utils

from server.db.sqlite_history._shared import run_script


def m001_foundation(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        CREATE TABLE areas (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 5),
            parent_id INTEGER REFERENCES areas(id),
            path TEXT NOT NULL UNIQUE,
            lat REAL,
            lng REAL,
            active INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX idx_areas_parent ON areas(parent_id);

        CREATE TABLE units (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            area_id INTEGER NOT NULL REFERENCES areas(id),
            contact_name TEXT NOT NULL DEFAULT '',
            contact_phone TEXT NOT NULL DEFAULT '',
            active INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX idx_units_area ON units(area_id);

        CREATE TABLE categories (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL UNIQUE,
            default_unit_id INTEGER REFERENCES units(id),
            time_limit_days INTEGER NOT NULL CHECK (time_limit_days BETWEEN 1 AND 365),
            active INTEGER NOT NULL DEFAULT 1
        );

        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL,
            phone TEXT NOT NULL DEFAULT '',
            roles TEXT NOT NULL,
            area_id INTEGER NOT NULL REFERENCES areas(id),
            unit_id INTEGER REFERENCES units(id),
            password_hash TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_users_area ON users(area_id);
        CREATE INDEX idx_users_unit ON users(unit_id);

        CREATE TABLE web_sessions (
            id INTEGER PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            user_id INTEGER NOT NULL REFERENCES users(id),
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX idx_web_sessions_user ON web_sessions(user_id);

        CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_seen_at TEXT,
            revoked_at TEXT,
            revoke_mode TEXT CHECK (revoke_mode IN ('stop', 'wipe')),
            revoked_by INTEGER REFERENCES users(id)
        );
        CREATE INDEX idx_devices_user ON devices(user_id);

        CREATE TABLE login_failures (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            first_failure_at TEXT NOT NULL,
            locked_until TEXT
        );

        CREATE TABLE visits (
            id TEXT PRIMARY KEY,
            author_id INTEGER NOT NULL REFERENCES users(id),
            area_id INTEGER REFERENCES areas(id),
            place TEXT NOT NULL DEFAULT '',
            method TEXT NOT NULL,
            checklist TEXT NOT NULL DEFAULT '[]',
            companions TEXT NOT NULL DEFAULT '',
            started_at TEXT NOT NULL,
            ended_at TEXT,
            lat REAL,
            lng REAL,
            accuracy_m REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_visits_author ON visits(author_id, started_at);
        CREATE INDEX idx_visits_area ON visits(area_id, started_at);

        CREATE TABLE diary_entries (
            id TEXT PRIMARY KEY,
            visit_id TEXT REFERENCES visits(id),
            author_id INTEGER NOT NULL REFERENCES users(id),
            area_id INTEGER REFERENCES areas(id),
            person_name TEXT NOT NULL DEFAULT '',
            person_kind TEXT NOT NULL,
            phone TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',
            content TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_diary_visit ON diary_entries(visit_id);
        CREATE INDEX idx_diary_author ON diary_entries(author_id, recorded_at);

        CREATE TABLE problems (
            id TEXT PRIMARY KEY,
            ledger_no TEXT UNIQUE,
            reporter_id INTEGER NOT NULL REFERENCES users(id),
            visit_id TEXT REFERENCES visits(id),
            diary_id TEXT REFERENCES diary_entries(id),
            area_id INTEGER NOT NULL REFERENCES areas(id),
            place TEXT NOT NULL DEFAULT '',
            lat REAL,
            lng REAL,
            category_id INTEGER REFERENCES categories(id),
            urgency TEXT NOT NULL DEFAULT 'normal',
            description TEXT NOT NULL,
            resident_name TEXT NOT NULL DEFAULT '',
            resident_phone TEXT NOT NULL DEFAULT '',
            suggested_unit_id INTEGER REFERENCES units(id),
            source TEXT NOT NULL DEFAULT 'visit',
            status TEXT NOT NULL,
            lead_unit_id INTEGER REFERENCES units(id),
            deadline TEXT,
            solved_on_spot INTEGER NOT NULL DEFAULT 0,
            supervision TEXT NOT NULL DEFAULT 'none',
            found_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            accepted_at TEXT,
            dispatched_at TEXT,
            closed_at TEXT
        );
        CREATE INDEX idx_problems_area_status ON problems(area_id, status);
        CREATE INDEX idx_problems_status_found ON problems(status, found_at);
        CREATE INDEX idx_problems_unit_status ON problems(lead_unit_id, status);
        CREATE INDEX idx_problems_reporter ON problems(reporter_id, found_at);
        CREATE INDEX idx_problems_found ON problems(found_at);

        CREATE TABLE problem_events (
            id TEXT PRIMARY KEY,
            problem_id TEXT NOT NULL REFERENCES problems(id),
            kind TEXT NOT NULL,
            actor_id INTEGER REFERENCES users(id),
            at TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT,
            note TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX idx_problem_events_problem ON problem_events(problem_id, at);

        CREATE TABLE attachments (
            sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
            size INTEGER NOT NULL,
            mime TEXT NOT NULL,
            width INTEGER,
            height INTEGER,
            uploaded_by INTEGER REFERENCES users(id),
            created_at TEXT NOT NULL
        );

        CREATE TABLE attachment_links (
            -- No foreign key: a record may name a photo whose bytes are
            -- still on their way (text syncs first).
            sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
            record_type TEXT NOT NULL CHECK (record_type IN ('visit', 'diary', 'problem', 'event')),
            record_id TEXT NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (record_type, record_id, sha256)
        );
        CREATE INDEX idx_attachment_links_sha ON attachment_links(sha256);

        -- Problem events are an append-only history.
        CREATE TRIGGER problem_events_no_update BEFORE UPDATE ON problem_events
        BEGIN SELECT RAISE(ABORT, 'problem_events is append-only'); END;
        CREATE TRIGGER problem_events_no_delete BEFORE DELETE ON problem_events
        BEGIN SELECT RAISE(ABORT, 'problem_events is append-only'); END;
        """
    )
