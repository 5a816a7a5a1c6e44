"""The schema steps before Alembic: `PRAGMA user_version` 0-4 of the SQLite databases written by the
service before it went through SQLAlchemy. db.migrate runs the missing ones on such a database, then
stamps it with the Alembic baseline (versions/0001_baseline.py, which is this schema at step 4), and
Alembic takes it from there. Never edit these: they are what those databases went through.
"""

from __future__ import annotations

# Each step runs in its own transaction, then user_version is set to its index + 1.
LEGACY_STEPS: list[list[str]] = [
    [
        """CREATE TABLE lockers (
            id TEXT PRIMARY KEY,
            key_hex TEXT NOT NULL,
            doors_json TEXT NOT NULL,            -- ["A1", "A2", ...]: the door labels
            host_rev INTEGER NOT NULL DEFAULT 0, -- H: revision of the host's code set
            log_floor INTEGER NOT NULL DEFAULT 0,-- changes after this revision are in the log
            locker_rev INTEGER,                  -- R: last revision the locker reported
            snap INTEGER NOT NULL DEFAULT 0,     -- the locker asked for a snapshot
            online INTEGER NOT NULL DEFAULT 0,
            status_json TEXT,
            last_seen REAL,
            last_cmd_seq INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE codes (
            id INTEGER PRIMARY KEY CHECK (id >= 1 AND id < 4294967296),
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            door TEXT NOT NULL,
            kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
            tag_hex TEXT NOT NULL,
            expires INTEGER NOT NULL DEFAULT 0,  -- epoch seconds, 0: none
            state TEXT NOT NULL DEFAULT 'issued' CHECK (state IN ('issued', 'revoked', 'used', 'expired')),
            recipient TEXT,
            notify_state TEXT,                   -- NULL: no hook; 'sent'; 'failed'
            notify_error TEXT,
            created_at REAL NOT NULL,
            used_at REAL,
            revoked_at REAL
        )""",
        "CREATE INDEX codes_locker_state ON codes(locker_id, state)",
        """CREATE TABLE changes (
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            rev INTEGER NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('add', 'del')),
            code_id INTEGER NOT NULL REFERENCES codes(id),
            PRIMARY KEY (locker_id, rev)
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            door TEXT,
            json TEXT NOT NULL,
            received_at REAL NOT NULL,
            UNIQUE (locker_id, seq)
        )""",
        """CREATE TABLE doors (
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            label TEXT NOT NULL,
            state TEXT,
            full INTEGER,                        -- NULL: no parcel sensor / unknown
            -- the events last applied to state and to full: an older event never overrides a newer one
            state_seq INTEGER NOT NULL DEFAULT 0,
            full_seq INTEGER NOT NULL DEFAULT 0,
            updated_at REAL,
            PRIMARY KEY (locker_id, label)
        )""",
        """CREATE TABLE commands (
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            tx TEXT NOT NULL,
            seq INTEGER NOT NULL,                -- of the last attempt
            op TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sent', 'ok', 'failed', 'abandoned')),
            attempts INTEGER NOT NULL DEFAULT 1,
            detail TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (locker_id, tx)
        )""",
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    # 2: deliveries, returns and staff PINs. `codes` is rebuilt: its kind is now the kind
    # byte of the protocol (bits 0-3 kind, 4-5 size wanted, 6 low door wanted), a door-free code
    # (staff, return, a delivery not loaded yet) has door '*', and more states.
    [
        """CREATE TABLE staff (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            locker_id TEXT REFERENCES lockers(id),  -- NULL: every locker registered when added
            created_at REAL NOT NULL,
            removed_at REAL
        )""",
        """CREATE TABLE codes_v2 (
            id INTEGER PRIMARY KEY CHECK (id >= 1 AND id < 4294967296),
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            door TEXT NOT NULL,                  -- a label; '*': door-free (a delivery: until loaded)
            kind INTEGER NOT NULL CHECK (kind >= 0 AND kind <= 127),
            tag_hex TEXT NOT NULL,
            expires INTEGER NOT NULL DEFAULT 0,  -- epoch seconds, 0: none
            state TEXT NOT NULL DEFAULT 'issued'
                CHECK (state IN ('issued', 'revoked', 'used', 'expired', 'taken_back')),
            recipient TEXT,
            notify_state TEXT,                   -- NULL: no hook; 'sent'; 'failed'; 'pending'
            notify_error TEXT,
            created_at REAL NOT NULL,
            used_at REAL,
            revoked_at REAL,
            item TEXT,                           -- deliveries and returns: parcel, document, ...
            staff_id INTEGER REFERENCES staff(id),  -- staff PINs: whose
            loaded_at REAL,                      -- deliveries and size-only loads: when (and by whom)
            loaded_by INTEGER,                   -- the staff code id the locker reported
            door_seq INTEGER,                    -- the event that bound a door-free code to its door
            reminded_at REAL,
            taken_back_at REAL
        )""",
        """INSERT INTO codes_v2(id, locker_id, door, kind, tag_hex, expires, state, recipient, notify_state,
                                notify_error, created_at, used_at, revoked_at)
           SELECT id, locker_id, door, kind, tag_hex, expires, state, recipient, notify_state,
                  notify_error, created_at, used_at, revoked_at FROM codes""",
        "DROP TABLE codes",
        "ALTER TABLE codes_v2 RENAME TO codes",
        "CREATE INDEX codes_locker_state ON codes(locker_id, state)",
        # A plain code waiting for its notification (a delivery's, until the resident has been told
        # after `loaded`); deleted once the hook took it. The database file is 0600.
        """CREATE TABLE held_codes (
            code_id INTEGER PRIMARY KEY REFERENCES codes(id),
            code TEXT NOT NULL
        )""",
        """CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            code_id INTEGER,
            kind TEXT NOT NULL,                  -- code, loaded, reminder, returned, taken_back
            door TEXT,
            detail_json TEXT NOT NULL DEFAULT '{}',  -- never a code
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            error TEXT,
            created_at REAL NOT NULL,
            sent_at REAL
        )""",
        "CREATE INDEX notifications_due ON notifications(state, next_at)",
        # One-off signed commands people ask for (door.open, door.service), with who asked.
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            op TEXT NOT NULL,
            args_json TEXT NOT NULL,
            by TEXT NOT NULL,
            tx TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'ok', 'failed', 'expired', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            seq INTEGER,
            reply_json TEXT,
            created_at REAL NOT NULL,
            sent_at REAL,
            done_at REAL
        )""",
        "CREATE INDEX requests_open ON requests(state)",
        "ALTER TABLE doors ADD COLUMN in_service INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE doors ADD COLUMN service_seq INTEGER NOT NULL DEFAULT 0",
    ],
    # 3: lockers whose connection flaps (online/offline over and over: a second client logging in with
    # a locker's password, which takes over its session each time, or a failing link), for staff.
    [
        """CREATE TABLE connection_flaps (
            id INTEGER PRIMARY KEY,
            locker_id TEXT NOT NULL REFERENCES lockers(id),
            started_at REAL NOT NULL,            -- the first change of the window that raised it
            last_at REAL NOT NULL,               -- the latest change
            changes INTEGER NOT NULL,            -- online/offline changes from started_at to last_at
            ended_at REAL                        -- NULL: still flapping
        )""",
        "CREATE INDEX connection_flaps_open ON connection_flaps(locker_id, ended_at)",
    ],
    # 4: staff PINs are per member and locker, and expire (fleet_db.issue_staff_pin). A staff member
    # is a person (staff.locker_id is no longer used). The PINs of the old rules stop working: one
    # PIN for every locker (one board's flash gave it for all), no expiry, staff codes of nobody, or
    # more than 90 days left; they are revoked and deleted from their lockers (one change each, in
    # code id order), and the member's pins_withdrawn_at says so in `lockerctl staff list`. Staff
    # codes that had expired are deleted from the lockers too (the host now removes expired PINs).
    [
        "ALTER TABLE staff ADD COLUMN pins_withdrawn_at REAL",
        """CREATE TEMP TABLE staff_pins_gone AS
           SELECT c.id, c.locker_id, c.staff_id, c.state,
                  row_number() OVER (PARTITION BY c.locker_id ORDER BY c.id) AS n
           FROM codes c LEFT JOIN staff s ON s.id = c.staff_id
           WHERE (c.kind & 15) = 1 AND (c.state = 'expired' OR (c.state = 'issued' AND (
               c.expires = 0 OR c.staff_id IS NULL OR s.locker_id IS NULL
               OR c.expires > CAST(strftime('%s', 'now') AS INTEGER) + 90 * 86400)))""",
        """INSERT INTO changes(locker_id, rev, op, code_id)
           SELECT g.locker_id, l.host_rev + g.n, 'del', g.id
           FROM staff_pins_gone g JOIN lockers l ON l.id = g.locker_id""",
        """UPDATE lockers
           SET host_rev = host_rev + (SELECT count(*) FROM staff_pins_gone g WHERE g.locker_id = lockers.id)""",
        """UPDATE staff SET pins_withdrawn_at = (julianday('now') - 2440587.5) * 86400.0
           WHERE id IN (SELECT staff_id FROM staff_pins_gone WHERE state = 'issued')""",
        """UPDATE codes SET state = 'revoked', revoked_at = (julianday('now') - 2440587.5) * 86400.0
           WHERE id IN (SELECT id FROM staff_pins_gone WHERE state = 'issued')""",
        "DROP TABLE staff_pins_gone",
    ],
]

LEGACY_VERSION = len(LEGACY_STEPS)  # the schema the Alembic baseline starts from
