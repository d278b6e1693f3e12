"""The server's tables (SQLAlchemy Core). Alembic migrations are generated from this
metadata and ``alembic check`` in the tests catches drift.

All times are integer microseconds since the epoch, UTC (see sekimori.clock).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "action_library",
    "action_targets",
    "actions",
    "alert_comments",
    "alert_events",
    "alerts",
    "audit_head",
    "audit_log",
    "console_sessions",
    "device_packages",
    "device_policy",
    "devices",
    "enrollment_tokens",
    "events",
    "groups",
    "jobs",
    "kev_entries",
    "keyring_proposals",
    "keyring_versions",
    "metadata",
    "operator_credentials",
    "policies",
    "quarantine",
    "rule_lists",
    "rule_settings",
    "rule_state",
    "rules_custom",
    "rules_revision",
    "screen_frames",
    "server_metadata",
    "usage_hourly",
    "user_groups",
    "users",
    "vuln_affected",
    "vuln_aliases",
    "vuln_device_state",
    "vuln_exceptions",
    "vuln_feed_imports",
    "vuln_findings",
    "vuln_hits",
    "vulnerabilities",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("os", sa.String(64), nullable=False),
    sa.Column("os_version", sa.String(255), nullable=False),
    sa.Column("agent_version", sa.String(64), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("cert_serial", sa.String(64), nullable=False),
    sa.Column("enrolled_us", sa.BigInteger, nullable=False),
    sa.Column("first_seen_us", sa.BigInteger, nullable=True),
    sa.Column("last_seen_us", sa.BigInteger, nullable=True),
    sa.Column("connected", sa.Boolean, nullable=False, default=False),
    sa.Column("revoked_us", sa.BigInteger, nullable=True, index=True),
    # Highest sequence number committed for this device: the dedup high-water mark.
    sa.Column("acked_seq", sa.BigInteger, nullable=False, default=0),
    sa.Column("outbox_events", sa.BigInteger, nullable=False, default=0),
    sa.Column("dropped_total", sa.BigInteger, nullable=False, default=0),
    # The console's device list sorts and pages on these (0003).
    sa.Index("ix_devices_hostname", "hostname", "id"),
    sa.Index("ix_devices_last_seen", "last_seen_us", "id"),
    sa.Index("ix_devices_group", "group_id", "hostname"),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # SHA-256 of the token: a stolen database does not yield usable tokens.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Column("used_us", sa.BigInteger, nullable=True),
    sa.Column("used_by_device", sa.String(36), nullable=True),
    sa.Column("revoked_us", sa.BigInteger, nullable=True),
    sa.Column("created_by", sa.String(128), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(128), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    # True: sees every device group (the first administrator); otherwise only the
    # groups listed in user_groups.
    sa.Column("all_groups", sa.Boolean, nullable=False, default=False),
    # Base32 TOTP secret once enrolled (RFC 6238), and the last time step accepted
    # (a code is never accepted twice).
    sa.Column("totp_secret", sa.String(64), nullable=True),
    sa.Column("totp_last_step", sa.BigInteger, nullable=True),
    sa.Column("failed_logins", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until_us", sa.BigInteger, nullable=True),
    sa.Column("last_login_us", sa.BigInteger, nullable=True),
    # "en" / "ja"; NULL follows the browser's Accept-Language.
    sa.Column("locale", sa.String(8), nullable=True),
)

# The device groups a (not all_groups) user may see and act on.
user_groups = sa.Table(
    "user_groups",
    metadata,
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), primary_key=True),
    sa.Index("ix_user_groups_group", "group_id"),
)

# Console sessions live on the server (revocable at once, unlike signed cookies); the
# cookie carries a random token and only its SHA-256 is stored.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("last_seen_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    # True between a correct password and the TOTP code: nothing but /login/totp.
    sa.Column("mfa_pending", sa.Boolean, nullable=False, default=False),
    sa.Column("client_ip", sa.String(64), nullable=False, default=""),
    sa.Index("ix_console_sessions_user", "user_id"),
)

# The audit trail: append-only and hash-chained. Each entry's hash covers its fields
# and the previous entry's hash, so editing or deleting an entry breaks the chain;
# audit_head holds the last seq and hash, so deleting the newest entries shows too.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("client_ip", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    # JSON object with the details (search terms, old/new values, result).
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_log_time", "time_us"),
    sa.Index("ix_audit_log_actor_time", "actor", "time_us"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Events: the primary key (device_id, seq) is the deduplication key, so retries and
# replays can never double-count. No foreign key on purpose: it would cost every
# insert a lookup, and device rows are never deleted (revoked devices stay).
events = sa.Table(
    "events",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("received_us", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("os_user", sa.String(256), nullable=True),
    # The validated payload as JSON text.
    sa.Column("payload", sa.Text, nullable=False),
    # Extracted at ingest (sekimori.server.event_fields) so the console can search and
    # group without parsing JSON: a short grouping key (web host, application,
    # executable name, USB vendor:product) and the searchable text (URL and title,
    # window title, path, command line).
    sa.Column("tag", sa.String(255), nullable=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Index("ix_events_time", "time_us"),
    # By kind and time; os_user and device_id ride along so the per-person reports
    # (logon hours) read the index alone, not 30,000 scattered table rows.
    sa.Index("ix_events_kind_time", "kind", "time_us", "os_user", "device_id"),
    # Log search by OS user ("what did this person do"): without it the search walks
    # every event of the period (1.8 s at 10M events).
    sa.Index("ix_events_user_time", "os_user", "time_us"),
    sa.Index("ix_events_device_time", "device_id", "time_us"),
)

# Events that arrived in a valid batch but failed validation (unknown kind, wrong
# payload types): kept with the reason instead of lost, and not counted as events.
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("received_us", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
)

# Rollups maintained at ingest (store/rollups.py), so reports over the whole fleet read
# a few thousand rows instead of every event. Keyed per UTC hour (local days and
# hours of any time zone are whole hours, DST included), device group (the unit of a
# console user's scope), kind and key (the web host, the application whose focus span
# ended, the USB device; empty for kinds without one). ``amount``: the summed focus
# span durations (window.focus/window.idle) or bytes copied (file.copied_to_removable).
usage_hourly = sa.Table(
    "usage_hourly",
    metadata,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("hour_us", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("group_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    # The dashboard's events per hour, every kind.
    sa.Index("ix_usage_hourly_hour", "hour_us"),
)

# Collection policies (sekimori.protocol.policy), one row per saved version of a
# group's policy; the newest version is the group's current policy. Rows are never
# updated or deleted: the history is what the console diffs and the audit refers to.
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    # The validated policy as JSON text.
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False, default=""),
)

# The policy version each device last reported as applied (the console's "which
# devices run which version"). No foreign key to devices, as for events.
device_policy = sa.Table(
    "device_policy",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("reported_us", sa.BigInteger, nullable=False),
)


# Alerts (issue 5): one row per (rule, device, key) while it is not resolved — the
# partial unique index makes a second "open" row for the same thing impossible, on
# every replica; a new match of a resolved alert opens a new one. ``count`` grows with
# each matching event (dedup: one alert with a count, not a thousand). ``key`` is the
# threshold rule's ``by`` values as JSON ("" for plain rules).
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.String(128), nullable=False),
    sa.Column("title", sa.String(256), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("device_id", sa.String(36), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    # open | acknowledged | resolved
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    # Times of the first and newest matching event (event time, not arrival).
    sa.Column("first_us", sa.BigInteger, nullable=False),
    sa.Column("last_us", sa.BigInteger, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    # One line saying what happened (the path, host, package...), for lists and mail.
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("assignee", sa.String(64), nullable=True),
    sa.Column("resolved_us", sa.BigInteger, nullable=True),
    # Notification outbox: NULL until every route was tried (see server/alerting).
    sa.Column("notified_us", sa.BigInteger, nullable=True),
    sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("notify_after_us", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index(
        "ux_alerts_active",
        "rule_id",
        "device_id",
        "key",
        unique=True,
        sqlite_where=sa.text("status != 'resolved'"),
        postgresql_where=sa.text("status != 'resolved'"),
    ),
    sa.Index("ix_alerts_status_last", "status", "last_us"),
    sa.Index("ix_alerts_device_last", "device_id", "last_us"),
    sa.Index("ix_alerts_last", "last_us"),
    sa.Index(
        "ix_alerts_notify",
        "notify_after_us",
        sqlite_where=sa.text("notified_us IS NULL"),
        postgresql_where=sa.text("notified_us IS NULL"),
    ),
)

# The matching events of an alert (the first ALERT_EVENTS_KEPT of them; ``count`` on
# the alert says how many there were in all).
alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), primary_key=True),
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
)

# An alert's history: comments, status changes and assignments, in order.
alert_comments = sa.Table(
    "alert_comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("author", sa.String(128), nullable=False),
    # comment | status | assign
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_alert_comments_alert", "alert_id", "id"),
)

# Rule configuration. Built-in rules are switched on and off here (absent: the rule's
# own ``enabled``); custom YAML rules and imported Sigma rules keep their source text.
rule_settings = sa.Table(
    "rule_settings",
    metadata,
    sa.Column("rule_id", sa.String(128), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

rules_custom = sa.Table(
    "rules_custom",
    metadata,
    # A name for the source (one YAML document may hold several rules).
    sa.Column("name", sa.String(128), primary_key=True),
    # yaml | sigma
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

# Named lists the rules refer to (blocked_domains, banned_software, ...): one entry
# per line.
rule_lists = sa.Table(
    "rule_lists",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("entries", sa.Text, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

# Bumped by every change to the tables above: each replica polls it and rebuilds its
# rule set when it moves. A single row, id 1.
rules_revision = sa.Table(
    "rules_revision",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
)

# Threshold rule windows per device (ThresholdTracker.export_state as JSON), written
# in the same transaction as the events they count: a restart or a move to another
# replica neither loses nor repeats a threshold alert.
rule_state = sa.Table(
    "rule_state",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)

# Background jobs shared by the replicas (server/alerting/jobs.py): a lease says which
# replica runs a job now (taken with a conditional UPDATE), ``last_run_us`` when it
# last finished, and ``state`` what the job keeps between runs (the notifier's
# rate-limit buckets and partly delivered alerts, as JSON).
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("lease_until_us", sa.BigInteger, nullable=False),
    sa.Column("last_run_us", sa.BigInteger, nullable=True),
    sa.Column("state", sa.Text, nullable=False),
)

# Screen frames (issue 6): one row per stored screenshot, written in the same
# transaction as its ``screen.frame`` event (whose payload keeps no picture). The
# picture itself is in the encrypted blob store (sekimori.server.blobs), addressed
# by ``sha256``; the same picture sent twice is one blob.
screen_frames = sa.Table(
    "screen_frames",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("monitor", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("format", sa.String(8), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("application", sa.String(255), nullable=True),
    sa.Column("os_user", sa.String(256), nullable=True),
    sa.Index("ix_screen_frames_device_time", "device_id", "time_us"),
    sa.Index("ix_screen_frames_user_time", "os_user", "time_us"),
    # Is a blob still referenced (retention, garbage collection)?
    sa.Index("ix_screen_frames_sha256", "sha256"),
)

# Vulnerabilities (issue 8; sekimori.server.vuln, store/vulns.py). Feed imports are
# atomic: one transaction replaces what a feed kind says, and the import is recorded
# here (failed attempts too, with the reason, in a transaction of their own).
vuln_feed_imports = sa.Table(
    "vuln_feed_imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # osv | kev | nvd
    sa.Column("kind", sa.String(8), nullable=False),
    # The file name or URL it came from.
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("imported_us", sa.BigInteger, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    # ok | failed
    sa.Column("status", sa.String(8), nullable=False),
    # The reason a failed import was refused; warnings (skipped ranges) for an ok one.
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("imported_by", sa.String(128), nullable=False),
    sa.Index("ix_vuln_feed_imports_kind", "kind", "imported_us"),
)

# One row per advisory (an OSV record id, or a CVE from NVD). ``known_exploited`` and
# ``kev_added_us`` are kept in step with kev_entries (through the aliases) by every
# import, so lists need no join to flag them.
vulnerabilities = sa.Table(
    "vulnerabilities",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    # osv | nvd
    sa.Column("feed", sa.String(8), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    # CRITICAL | HIGH | MEDIUM | LOW | NONE | "" (unknown)
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("cvss_score", sa.Float, nullable=True),
    sa.Column("cvss_vector", sa.String(255), nullable=True),
    sa.Column("published_us", sa.BigInteger, nullable=True),
    sa.Column("modified_us", sa.BigInteger, nullable=True),
    sa.Column("known_exploited", sa.Boolean, nullable=False),
    sa.Column("kev_added_us", sa.BigInteger, nullable=True),
    sa.Index("ix_vulnerabilities_kev", "known_exploited", "id"),
)

# Every name of a vulnerability: its CVE ids (aliases, upstream), including its own id.
vuln_aliases = sa.Table(
    "vuln_aliases",
    metadata,
    sa.Column("vuln_id", sa.String(128), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Index("ix_vuln_aliases_alias", "alias"),
)

# Affected version intervals, normalized for matching: an OSV range event list or an
# NVD cpeMatch becomes one row per interval [lower, upper). ``ecosystem`` is the OSV
# ecosystem ("Debian:12", "Ubuntu:22.04:LTS", "PyPI", "npm") or "cpe" (package is
# "vendor:product"); ``package`` is normalized as matching needs it. Empty lower: from
# the first version; NULL upper: no fix.
vuln_affected = sa.Table(
    "vuln_affected",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("vuln_id", sa.String(128), nullable=False),
    sa.Column("ecosystem", sa.String(64), nullable=False),
    sa.Column("package", sa.String(255), nullable=False),
    sa.Column("lower", sa.String(255), nullable=False),
    sa.Column("lower_inclusive", sa.Boolean, nullable=False),
    sa.Column("upper", sa.String(255), nullable=True),
    sa.Column("upper_inclusive", sa.Boolean, nullable=False),
    # The version that fixes it (shown to the administrator), NULL when none.
    sa.Column("fixed", sa.String(255), nullable=True),
    # When the fix became available (see docs/vulnerabilities.md), NULL when none.
    sa.Column("fixed_us", sa.BigInteger, nullable=True),
    sa.Index("ix_vuln_affected_package", "ecosystem", "package"),
    sa.Index("ix_vuln_affected_vuln", "vuln_id"),
)

# The CISA Known Exploited Vulnerabilities catalog, as last imported.
kev_entries = sa.Table(
    "kev_entries",
    metadata,
    sa.Column("cve_id", sa.String(32), primary_key=True),
    sa.Column("vendor", sa.String(255), nullable=False),
    sa.Column("product", sa.String(255), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("date_added_us", sa.BigInteger, nullable=False),
    sa.Column("due_date_us", sa.BigInteger, nullable=True),
    # Known | Unknown
    sa.Column("ransomware", sa.String(16), nullable=False),
)

# Where each device stands for matching: the OSV ecosystem of its OS release (from its
# newest inventory.hardware) and the last event sequence the vulnerability job applied.
vuln_device_state = sa.Table(
    "vuln_device_state",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("os_id", sa.String(64), nullable=False),
    sa.Column("os_version_id", sa.String(64), nullable=False),
    sa.Column("os_codename", sa.String(64), nullable=False),
    # "Debian:12", "Ubuntu:22.04:LTS", or "" (a release no feed covers).
    sa.Column("release_ecosystem", sa.String(64), nullable=False),
    sa.Column("applied_seq", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)

# The packages installed on each device now, kept from its inventory events. The
# ``match_*`` columns say how it is matched: dpkg packages by source package and
# source version under the release's ecosystem; PyPI/npm by (normalized) name; others
# through the CPE map ("cpe", "vendor:product") or not at all (NULL ecosystem).
device_packages = sa.Table(
    "device_packages",
    metadata,
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("manager", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("architecture", sa.String(32), primary_key=True),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("source", sa.String(255), nullable=False),
    sa.Column("source_version", sa.String(255), nullable=False),
    sa.Column("match_ecosystem", sa.String(64), nullable=True),
    sa.Column("match_package", sa.String(255), nullable=True),
    sa.Column("match_version", sa.String(255), nullable=True),
    # Devices with a given version; device_id makes it covering for the full re-match.
    sa.Index(
        "ix_device_packages_match",
        "match_ecosystem",
        "match_package",
        "match_version",
        "device_id",
    ),
)

# Scratch table of the vulnerability job (the lease holder only): the affected
# (ecosystem, package, version) tuples of one full re-match, joined in SQL against
# device_packages.
vuln_hits = sa.Table(
    "vuln_hits",
    metadata,
    sa.Column("ecosystem", sa.String(64), primary_key=True),
    sa.Column("package", sa.String(255), primary_key=True),
    sa.Column("version", sa.String(255), primary_key=True),
    sa.Column("vuln_id", sa.String(128), primary_key=True),
    sa.Column("fixed", sa.String(255), nullable=True),
    sa.Column("fixed_us", sa.BigInteger, nullable=True),
    sa.Column("feed", sa.String(8), nullable=False),
    sa.Column("confidence", sa.String(8), nullable=False),
)

# Findings: a device exposed to a vulnerability through a package. Open while
# ``resolved_us`` is NULL; a resolved finding stays (the compliance history), and the
# same exposure coming back opens a new row.
vuln_findings = sa.Table(
    "vuln_findings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(36), nullable=False),
    sa.Column("vuln_id", sa.String(128), nullable=False),
    sa.Column("ecosystem", sa.String(64), nullable=False),
    sa.Column("package", sa.String(255), nullable=False),
    sa.Column("installed_version", sa.String(255), nullable=False),
    sa.Column("fixed_version", sa.String(255), nullable=True),
    # osv | nvd
    sa.Column("feed", sa.String(8), nullable=False),
    # high (OSV, the distribution's or ecosystem's own data) | low (NVD CPE)
    sa.Column("confidence", sa.String(8), nullable=False),
    sa.Column("first_seen_us", sa.BigInteger, nullable=False),
    sa.Column("fix_available_us", sa.BigInteger, nullable=True),
    sa.Column("resolved_us", sa.BigInteger, nullable=True),
    # Exposure per vulnerability, and the full re-match's targeted updates. (Few
    # indexes on purpose: a first full re-match writes millions of rows.)
    sa.Index("ix_vuln_findings_vuln", "vuln_id", "resolved_us"),
    # A device's findings, and "is this finding open already?" while opening them.
    sa.Index("ix_vuln_findings_key", "device_id", "vuln_id", "ecosystem", "package"),
)

# Accepted risk: hides matching findings of a device or of a group's devices until
# ``expires_us``; then they show again.
vuln_exceptions = sa.Table(
    "vuln_exceptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(36), nullable=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=True),
    sa.Column("vuln_id", sa.String(128), nullable=False),
    # NULL: every package.
    sa.Column("package", sa.String(255), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Index("ix_vuln_exceptions_vuln", "vuln_id"),
)

# Signed remote actions (issue 7; sekimori.server.actions, store/actions.py,
# docs/actions.md). Small facts about this deployment, one row each: "deployment_id"
# (random, created on first use, named in every keyring and command).
server_metadata = sa.Table(
    "server_metadata",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Published operator keyrings, one row per version: ``body`` is the encoded Keyring
# (the bytes operators signed), ``signatures`` a msgpack list[Signature] by a quorum
# of the version before (empty for version 1, which is pinned by its fingerprint).
keyring_versions = sa.Table(
    "keyring_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("signatures", sa.LargeBinary, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

# A proposed next keyring collecting signatures. open | published | withdrawn
keyring_proposals = sa.Table(
    "keyring_proposals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("signatures", sa.LargeBinary, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
)

# Operator credentials known to the server (public keys only). pending: registered,
# not yet in a published keyring; active: in the current keyring; removed: was in one.
operator_credentials = sa.Table(
    "operator_credentials",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("operator", sa.String(128), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    # ed25519 | webauthn
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("rp_id", sa.String(253), nullable=False),
    sa.Column("origins", sa.Text, nullable=False),  # JSON list
    sa.Column("credential_id", sa.LargeBinary, nullable=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Index("ix_operator_credentials_operator", "operator"),
)

# Commands: the encoded CommandBody operators sign, its digest and the signatures
# collected so far. awaiting_signatures | ready | expired | cancelled
actions = sa.Table(
    "actions",
    metadata,
    sa.Column("nonce", sa.String(32), primary_key=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("device_count", sa.Integer, nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("signatures", sa.LargeBinary, nullable=False),  # msgpack list[Signature]
    sa.Column("signers", sa.Text, nullable=False),  # JSON list of operator names
    sa.Column("needed_signers", sa.Integer, nullable=False),
    # Set when the command became ready (latency figures, routing order).
    sa.Column("ready_at_us", sa.BigInteger, nullable=True),
    sa.Index("ix_actions_state_expires", "state", "expires_at_us"),
    sa.Index("ix_actions_created", "created_at_us"),
)

# One row per device a command targets (the full list: each agent gets its Merkle
# path over it). pending | sent | done | failed | refused | expired
action_targets = sa.Table(
    "action_targets",
    metadata,
    sa.Column("nonce", sa.String(32), primary_key=True),
    sa.Column("device_id", sa.String(36), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("sent_at_us", sa.BigInteger, nullable=True),
    sa.Column("finished_at_us", sa.BigInteger, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("data_sha256", sa.String(64), nullable=True),
    sa.Column("data_size", sa.BigInteger, nullable=True),
    sa.Index("ix_action_targets_state_device", "state", "device_id"),
)

# Scripts and packages commands may name (by SHA-256); the bytes travel beside the
# command. script | package
action_library = sa.Table(
    "action_library",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("interpreter", sa.String(16), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)
