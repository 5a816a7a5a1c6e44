"""The fleet database's tables, defined once (SQLAlchemy Core) for SQLite and PostgreSQL.

A fresh database is created from these tables and stamped with the newest Alembic revision
(db.migrate); an existing one is upgraded by the revisions in service/migrations. A change here
goes with a new revision there.

Numbers that can pass 2**31 (code ids, command seqs in ms since the epoch, expiries up to 2**32 - 1)
are BIGINT on PostgreSQL; on SQLite every integer key stays `INTEGER PRIMARY KEY` (the rowid), as
the databases written before SQLAlchemy have it. Times are seconds since the epoch (REAL / double).
"""

from __future__ import annotations

import sqlalchemy as sa

# BIGINT on PostgreSQL, INTEGER on SQLite (where an `INTEGER PRIMARY KEY` is the rowid).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Big = sa.BigInteger
Time = sa.Float(precision=53)

metadata = sa.MetaData()


def _zero() -> sa.TextClause:
    return sa.text("0")


lockers = sa.Table(
    "lockers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("key_hex", sa.Text, nullable=False),
    sa.Column("doors_json", sa.Text, nullable=False),  # ["A1", "A2", ...]: the door labels
    sa.Column("host_rev", Big, nullable=False, server_default=_zero()),  # H: revision of the host's code set
    sa.Column("log_floor", Big, nullable=False, server_default=_zero()),  # changes after it are in the log
    sa.Column("locker_rev", Big),  # R: last revision the locker reported
    sa.Column("snap", sa.Integer, nullable=False, server_default=_zero()),  # the locker asked for a snapshot
    sa.Column("online", sa.Integer, nullable=False, server_default=_zero()),
    sa.Column("status_json", sa.Text),
    sa.Column("last_seen", Time),
    sa.Column("last_cmd_seq", Big, nullable=False, server_default=_zero()),
    sa.Column("created_at", Time, nullable=False),
)

staff = sa.Table(
    "staff",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=False),  # random, like code ids
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id")),  # no longer used (PINs are per locker)
    sa.Column("created_at", Time, nullable=False),
    sa.Column("removed_at", Time),
    sa.Column("pins_withdrawn_at", Time),  # the upgrade to per-locker expiring PINs withdrew an old one
)

CODE_STATES = ("issued", "revoked", "used", "expired", "taken_back")
codes = sa.Table(
    "codes",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=False),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("door", sa.Text, nullable=False),  # a label; '*': door-free (a delivery: until loaded)
    sa.Column("kind", sa.Integer, nullable=False),  # the protocol's kind byte
    sa.Column("tag_hex", sa.Text, nullable=False),
    sa.Column("expires", Big, nullable=False, server_default=_zero()),  # epoch seconds, 0: none
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'issued'")),
    sa.Column("recipient", sa.Text),
    sa.Column("notify_state", sa.Text),  # NULL: no hook; 'sent'; 'failed'; 'pending'
    sa.Column("notify_error", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("used_at", Time),
    sa.Column("revoked_at", Time),
    sa.Column("item", sa.Text),  # deliveries and returns: parcel, document, ...
    sa.Column("staff_id", Big, sa.ForeignKey("staff.id")),  # staff PINs: whose
    sa.Column("loaded_at", Time),
    sa.Column("loaded_by", Big),  # the staff code id the locker reported
    sa.Column("door_seq", Big),  # the event that bound a door-free code to its door
    sa.Column("reminded_at", Time),
    sa.Column("taken_back_at", Time),
    sa.CheckConstraint("id >= 1 AND id < 4294967296", name="codes_id_u32"),
    sa.CheckConstraint("kind >= 0 AND kind <= 127", name="codes_kind_byte"),
    sa.CheckConstraint(f"state IN {CODE_STATES!r}", name="codes_state"),
)
sa.Index("codes_locker_state", codes.c.locker_id, codes.c.state)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), primary_key=True),
    sa.Column("rev", Big, primary_key=True, autoincrement=False),
    sa.Column("op", sa.Text, nullable=False),
    sa.Column("code_id", Big, sa.ForeignKey("codes.id"), nullable=False),
    sa.CheckConstraint("op IN ('add', 'del')", name="changes_op"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("seq", Big, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("door", sa.Text),
    sa.Column("json", sa.Text, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    sa.UniqueConstraint("locker_id", "seq"),
)

doors = sa.Table(
    "doors",
    metadata,
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), primary_key=True),
    sa.Column("label", sa.Text, primary_key=True),
    sa.Column("state", sa.Text),
    sa.Column("full", sa.Integer),  # NULL: no parcel sensor / unknown ("full" is quoted: reserved in SQL)
    # the events last applied to state and to full: an older event never overrides a newer one
    sa.Column("state_seq", Big, nullable=False, server_default=_zero()),
    sa.Column("full_seq", Big, nullable=False, server_default=_zero()),
    sa.Column("updated_at", Time),
    sa.Column("in_service", sa.Integer, nullable=False, server_default=sa.text("1")),
    sa.Column("service_seq", Big, nullable=False, server_default=_zero()),
)

commands = sa.Table(
    "commands",
    metadata,
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), primary_key=True),
    sa.Column("tx", sa.Text, primary_key=True),
    sa.Column("seq", Big, nullable=False),  # of the last attempt
    sa.Column("op", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("1")),
    sa.Column("detail", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.CheckConstraint("state IN ('sent', 'ok', 'failed', 'abandoned')", name="commands_state"),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# A plain code waiting for its notification (a delivery's, until the resident has been told after
# `loaded`); deleted once the hook took it. The SQLite file is 0600.
held_codes = sa.Table(
    "held_codes",
    metadata,
    sa.Column("code_id", Id, sa.ForeignKey("codes.id"), primary_key=True, autoincrement=False),
    sa.Column("code", sa.Text, nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("code_id", Big),
    sa.Column("kind", sa.Text, nullable=False),  # code, loaded, reminder, returned, taken_back
    sa.Column("door", sa.Text),
    sa.Column("detail_json", sa.Text, nullable=False, server_default=sa.text("'{}'")),  # never a code
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=_zero()),
    sa.Column("next_at", Time, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("sent_at", Time),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed', 'skipped')", name="notifications_state"),
)
sa.Index("notifications_due", notifications.c.state, notifications.c.next_at)

# One-off signed commands people ask for (door.open, door.service), with who asked ("by" is quoted:
# a reserved word in SQL).
requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("op", sa.Text, nullable=False),
    sa.Column("args_json", sa.Text, nullable=False),
    sa.Column("by", sa.Text, nullable=False),
    sa.Column("tx", sa.Text, nullable=False, unique=True),
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'queued'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=_zero()),
    sa.Column("seq", Big),
    sa.Column("reply_json", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("sent_at", Time),
    sa.Column("done_at", Time),
    sa.CheckConstraint("state IN ('queued', 'sent', 'ok', 'failed', 'expired', 'cancelled')", name="requests_state"),
)
sa.Index("requests_open", requests.c.state)

# Lockers whose connection flaps (online/offline over and over), for staff.
connection_flaps = sa.Table(
    "connection_flaps",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("started_at", Time, nullable=False),  # the first change of the window that raised it
    sa.Column("last_at", Time, nullable=False),  # the latest change
    sa.Column("changes", sa.Integer, nullable=False),  # online/offline changes from started_at to last_at
    sa.Column("ended_at", Time),  # NULL: still flapping
)
sa.Index("connection_flaps_open", connection_flaps.c.locker_id, connection_flaps.c.ended_at)

# --- deliveries: the resident and the town's case --------------------------------------------------
# A delivery's row in codes holds what the locker needs; this one what people need: whom it is for,
# how to reach them, in which language, and the town's own case number (e-loket, appointments).
# The contact fields are personal data: they are blanked `contact_purged_at` (privacy retention).
delivery_details = sa.Table(
    "delivery_details",
    metadata,
    sa.Column("code_id", Id, sa.ForeignKey("codes.id"), primary_key=True, autoincrement=False),
    sa.Column("case_ref", sa.Text),  # the town's case number
    sa.Column("resident_name", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("language", sa.Text, nullable=False, server_default=sa.text("'nl'")),
    sa.Column("source", sa.Text, nullable=False, server_default=sa.text("'cli'")),  # cli, desk, api
    sa.Column("created_by", sa.Text),  # a staff account or an API token's name
    sa.Column("contact_purged_at", Time),
    sa.CheckConstraint("language IN ('nl', 'fr', 'en')", name="delivery_details_language"),
)
sa.Index("delivery_details_case", delivery_details.c.case_ref)
# --- incidents: what needs a person (service/incidents.py) -----------------------------------------

INCIDENT_STATES = ("new", "in_progress", "resolved")
incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("door", sa.Text),  # a label; NULL: the whole locker (or a lock board: subject)
    # what it is about within the locker, part of the dedup key: the door label, "board 3", or ""
    sa.Column("subject", sa.Text, nullable=False, server_default=sa.text("''")),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'new'")),
    sa.Column("opened_at", Time, nullable=False),
    sa.Column("event_seq", Big),  # the event that opened it; NULL: a periodic check did
    sa.Column("last_seq", Big),  # the latest event that opened or repeated it
    sa.Column("last_at", Time, nullable=False),
    sa.Column("count", sa.Integer, nullable=False, server_default=sa.text("1")),  # occurrences while open
    sa.Column("detail", sa.Text),
    sa.Column("handled_by", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("resolved_at", Time),
    sa.Column("resolved_by", sa.Text),  # 'auto' or a staff account name
    sa.Column("resolution", sa.Text),  # the automatic reason, or the staff member's note
    sa.CheckConstraint(f"state IN {INCIDENT_STATES!r}", name="incidents_state"),
)
# One open incident per cause and subject: a repeat bumps it (a partial unique index, on both databases).
sa.Index(
    "incidents_one_open",
    incidents.c.locker_id,
    incidents.c.cause,
    incidents.c.subject,
    unique=True,
    sqlite_where=sa.text("state != 'resolved'"),
    postgresql_where=sa.text("state != 'resolved'"),
)
sa.Index("incidents_state_opened", incidents.c.state, incidents.c.opened_at)

# Every state change of an incident ("by" is quoted: a reserved word in SQL); the id only grows.
incident_log = sa.Table(
    "incident_log",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("incident_id", Big, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("action", sa.Text, nullable=False),  # opened, taken, note, resolved
    sa.Column("state", sa.Text, nullable=False),  # the incident's state after it
    sa.Column("by", sa.Text, nullable=False),  # 'auto' or a staff account name
    sa.Column("note", sa.Text),
)
sa.Index("incident_log_incident", incident_log.c.incident_id)

# --- the HTTP API for the town's systems, and its webhooks (lockertools/api, docs/api.md) ------------
# An integration's token: only its SHA-256 is kept (a token is 256 random bits: a fast hash is safe).
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),  # the integration: e-loket, appointments, ...
    sa.Column("token_sha256", sa.Text, nullable=False, unique=True),
    sa.Column("scopes", sa.Text, nullable=False),  # space-separated: read, deliveries
    sa.Column("created_by", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_used_at", Time),
    sa.Column("revoked_at", Time),
)

# A request's Idempotency-Key, per token, with the request's hash and the answer given (kept 24 h).
# `status` NULL: the first request with the key is still running.
api_idempotency = sa.Table(
    "api_idempotency",
    metadata,
    sa.Column("token_id", Big, sa.ForeignKey("api_tokens.id"), primary_key=True, autoincrement=False),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_sha256", sa.Text, nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("response_json", sa.Text),
    sa.Column("created_at", Time, nullable=False),
)
sa.Index("api_idempotency_age", api_idempotency.c.created_at)

# Door sizes and low doors of a locker's board (lockerctl locker add records them): the API's free
# doors per size. A locker without rows here counts its free doors as of unknown size.

# --- the staff desk: accounts, sessions, login throttle, audit trail (lockertools/desk) ------------

DESK_ROLES = ("desk", "manager", "admin")
desk_accounts = sa.Table(
    "desk_accounts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id, with its parameters and salt
    sa.Column("language", sa.Text),  # NULL: the desk's default
    sa.Column("created_at", Time, nullable=False),
    sa.Column("disabled_at", Time),
    sa.CheckConstraint(f"role IN {DESK_ROLES!r}", name="desk_accounts_role"),
)

# A session's row is found by the SHA-256 of the cookie's random value: a copy of the database does
# not hold a cookie anyone could present.
desk_sessions = sa.Table(
    "desk_sessions",
    metadata,
    sa.Column("id_hash", sa.Text, primary_key=True),
    sa.Column("account_id", Big, sa.ForeignKey("desk_accounts.id"), nullable=False),
    sa.Column("csrf", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_seen", Time, nullable=False),
)
sa.Index("desk_sessions_account", desk_sessions.c.account_id)

# Failed logins per account name ("account:NAME") and per client address ("address:IP").
desk_login_failures = sa.Table(
    "desk_login_failures",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_at", Time, nullable=False),
)

# Every staff action: who, what, when, from which address. Append-only: the database refuses an
# UPDATE or DELETE (DESK_AUDIT_GUARDS), and the desk has no path that would ask.
desk_audit = sa.Table(
    "desk_audit",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("account_id", Big),  # NULL: no account (a failed login under an unknown name)
    sa.Column("account_name", sa.Text, nullable=False),
    sa.Column("role", sa.Text),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("detail_json", sa.Text, nullable=False, server_default=sa.text("'{}'")),
)
sa.Index("desk_audit_at", desk_audit.c.at)

# Each door's size class and whether it is low, from the locker's board file (`lockerctl locker add`),
# for the desk's free doors per size. A locker registered before has none: its doors count as
# "size unknown".
door_sizes = sa.Table(
    "door_sizes",
    metadata,
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), primary_key=True),
    sa.Column("label", sa.Text, primary_key=True),
    sa.Column("size", sa.Text, nullable=False),
    sa.Column("low", sa.Integer, nullable=False, server_default=_zero()),
    sa.CheckConstraint("size IN ('S', 'M', 'L')", name="door_sizes_size"),
)

# URLs an admin registered; `secret` signs the bodies (HMAC-SHA256), so it is kept as it is.
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("created_by", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("removed_at", Time),
)

# The outbox: one row per delivery state change, written in the change's own transaction, with the
# body sent as it is on every attempt.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("code_id", Big, nullable=False),  # the delivery number
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

# Each event to each webhook registered when it happened: pending until a 2xx, retried with a growing
# delay, `failed` once the attempts ran out (listed for staff with the last error).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("event_id", Big, sa.ForeignKey("webhook_events.id"), primary_key=True, autoincrement=False),
    sa.Column("webhook_id", Big, sa.ForeignKey("webhooks.id"), primary_key=True, autoincrement=False),
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=_zero()),
    sa.Column("next_at", Time, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("last_attempt_at", Time),
    sa.Column("sent_at", Time),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name="webhook_deliveries_state"),
)
sa.Index("webhook_deliveries_due", webhook_deliveries.c.state, webhook_deliveries.c.next_at)
DESK_AUDIT_GUARDS = {
    "sqlite": [
        "CREATE TRIGGER desk_audit_no_update BEFORE UPDATE ON desk_audit"
        " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
        "CREATE TRIGGER desk_audit_no_delete BEFORE DELETE ON desk_audit"
        " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION desk_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$",
        "CREATE TRIGGER desk_audit_no_change BEFORE UPDATE OR DELETE ON desk_audit"
        " FOR EACH ROW EXECUTE FUNCTION desk_audit_append_only()",
        "CREATE TRIGGER desk_audit_no_truncate BEFORE TRUNCATE ON desk_audit"
        " FOR EACH STATEMENT EXECUTE FUNCTION desk_audit_append_only()",
    ],
}
for _dialect, _statements in DESK_AUDIT_GUARDS.items():
    for _statement in _statements:
        guard = sa.DDL(_statement).execute_if(dialect=_dialect)  # type: ignore[no-untyped-call]
        sa.event.listen(desk_audit, "after_create", guard)

# --- residents' messages: the outbox (lockertools/notify, docs/notifications.md) -------------------
# One row per message per channel: a delivery's `loaded` message by e-mail and by text message is two
# rows. The plain code is never here (held_codes has it until every channel accepted the message);
# `address` (an e-mail address or a phone number) is personal data, blanked with the delivery's contact
# details (privacy retention). `ref` is the message's stable identity (the e-mail's Message-ID, the SMS
# gateway's reference): a send repeated after a restart carries the same one.
MESSAGE_STATES = ("pending", "sending", "sent", "failed", "to_print", "printed", "skipped")
resident_messages = sa.Table(
    "resident_messages",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("code_id", Big, nullable=False),  # the delivery (its number)
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # loaded, reminder, picked_up
    sa.Column("channel", sa.Text, nullable=False),  # email, sms, letter; none: nothing reaches the resident
    sa.Column("address", sa.Text),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("ref", sa.Text, nullable=False, unique=True),
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=_zero()),
    sa.Column("next_at", Time, nullable=False),
    sa.Column("error", sa.Text),  # the last failure, never with the code
    sa.Column("created_at", Time, nullable=False),
    sa.Column("sent_at", Time),  # accepted by the server or gateway; a letter: printed
    sa.UniqueConstraint("code_id", "kind", "channel", name="resident_messages_once"),
    sa.CheckConstraint(f"state IN {MESSAGE_STATES!r}", name="resident_messages_state"),
)
sa.Index("resident_messages_due", resident_messages.c.state, resident_messages.c.next_at)

# --- staff alerts of incidents (lockertools/notify/alerts.py, docs/notifications.md "Staff alerts") --
# Whom a locker's incidents are alerted to: e-mail addresses and SMS numbers of staff, several allowed
# (a locker without any: the configuration's [alerts] default contacts).
ALERT_CHANNELS = ("email", "sms")
alert_contacts = sa.Table(
    "alert_contacts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("locker_id", sa.Text, sa.ForeignKey("lockers.id"), nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("locker_id", "channel", "address", name="alert_contacts_once"),
    sa.CheckConstraint(f"channel IN {ALERT_CHANNELS!r}", name="alert_contacts_channel"),
)

# The incident_log entries the alert sender has looked at: the cursor is the highest; the entries a
# little below it are kept too, since on PostgreSQL a lower id can commit after a higher one.
alert_seen = sa.Table(
    "alert_seen",
    metadata,
    sa.Column("log_id", Big, primary_key=True, autoincrement=False),
    sa.Column("seen_at", Time, nullable=False),
)

# One message to one staff contact: a batch of incident changes, its text rendered when the batch
# closed (never a code or a resident's data), sent as it is on every attempt with its stable `ref`.
STAFF_ALERT_STATES = ("pending", "sending", "sent", "failed")
staff_alerts = sa.Table(
    "staff_alerts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("ref", sa.Text, nullable=False, unique=True),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("sms", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=_zero()),
    sa.Column("next_at", Time, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("sent_at", Time),
    sa.CheckConstraint(f"state IN {STAFF_ALERT_STATES!r}", name="staff_alerts_state"),
)
sa.Index("staff_alerts_due", staff_alerts.c.state, staff_alerts.c.next_at)

# Each opened or resolved incident for each contact it goes to: waiting in the contact's batch
# (alert_id NULL) until the batch window closes, then in the message that carried it.
alert_items = sa.Table(
    "alert_items",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("log_id", Big, nullable=False),
    sa.Column("incident_id", Big, nullable=False),  # incidents.id (no foreign key: alerts never hold that table back)
    sa.Column("action", sa.Text, nullable=False),  # opened, resolved
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("alert_id", Big, sa.ForeignKey("staff_alerts.id")),
    sa.UniqueConstraint("log_id", "channel", "address", name="alert_items_once"),
)
sa.Index("alert_items_waiting", alert_items.c.alert_id, alert_items.c.channel, alert_items.c.address)
