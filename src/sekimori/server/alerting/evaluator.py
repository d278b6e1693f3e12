"""Rules at ingest: evaluate each newly stored event, in the transaction that stores it.

The ingest writer calls ``IngestRules.evaluate`` after ``write_batches`` and before
commit. So an alert and the events that raised it commit together: no alert for an
event that was rolled back, no event without its alert, and a resent batch (rows at or
below the device's ``acked_seq`` before this transaction) matches nothing twice.

Threshold windows are counted per device, in a ``ThresholdTracker`` per device that is
saved to ``rule_state`` in the same transaction whenever it counted something. A
device streams to one replica at a time; when it connects, that replica drops its
cached tracker (``forget``) and loads the stored one, so a restart or a move to another
replica neither loses nor repeats a threshold alert. When a commit fails, the writer
calls ``discard`` for the devices in it: their trackers counted events that were not
stored, and are reloaded from the store.

The rule set is rebuilt when ``rules_revision`` moves, polled at most once per
``poll_seconds``: by the writer when it is idle, and from inside its transaction when
it is busy. A change in the console reaches ingest within about a second on every
replica, and compiling rules (YAML parsing: about half a second for a hundred rules)
mostly happens while no batch waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sekimori.protocol.events import EVENT_KINDS, Payload
from sekimori.server.alerting.ruleset import BuiltRules, build_rules, compile_rules
from sekimori.server.rules import EvalEvent, Match, RuleError, RuleSet, ThresholdTracker
from sekimori.server.store.alerts import AlertMatch, RecordedAlerts, record_alert_matches
from sekimori.server.store.events import StoredBatch
from sekimori.server.store.rule_config import load_rule_config, rules_revision_of
from sekimori.server.store.schema import groups, rule_state

__all__ = ["IngestRules", "match_key", "match_summary"]

log = logging.getLogger(__name__)

_decode = msgspec.json.decode
_encode = msgspec.json.encode


_decoders: dict[str, msgspec.json.Decoder[Payload]] = {}


def _decode_payload(kind: str, text: str) -> Payload | None:
    """The typed payload of a stored row (when the caller did not pass the structs);
    None if it does not decode (it did when stored: only a schema change could)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        cls = EVENT_KINDS.get(kind)
        if cls is None:
            return None
        decoder = _decoders[kind] = msgspec.json.Decoder(cls)
    try:
        return decoder.decode(text)
    except msgspec.DecodeError:
        return None


def match_key(match: Match) -> str:
    """The dedup key of a match's alert: "" for a plain rule (one alert per rule and
    device), the threshold's ``by`` values as JSON otherwise."""
    if not match.key:
        return ""
    return _encode(list(match.key)).decode("utf-8")


def match_summary(match: Match, tag: str | None, subject: str | None) -> str:
    """One line for lists and notifications: what the event was about, or for a
    threshold rule how many events and whose."""
    if match.rule.threshold is not None:
        whose = ", ".join(str(v) for v in match.key if v is not None)
        return f"{match.count} events" + (f" ({whose})" if whose else "")
    return (subject or tag or match.event.kind)[:2000]


class IngestRules:
    """The rules in force and the per-device threshold state. Used by the writer
    thread only, except ``forget`` (any thread)."""

    def __init__(self, *, poll_seconds: float = 1.0) -> None:
        self._poll_seconds = poll_seconds
        self._next_poll = 0.0
        self._built: BuiltRules | None = None
        self._ruleset = RuleSet([])
        self._trackers: dict[str, ThresholdTracker] = {}
        self._group_names: dict[int, str | None] = {}
        self._forget: set[str] = set()
        self._forget_lock = threading.Lock()

    @property
    def poll_seconds(self) -> float:
        return self._poll_seconds

    @property
    def ruleset(self) -> RuleSet:
        return self._ruleset

    @property
    def revision(self) -> int:
        return -1 if self._built is None else self._built.revision

    def forget(self, device_id: str) -> None:
        """Drop the cached tracker of a device (it connected: another replica may
        have counted its events since)."""
        with self._forget_lock:
            self._forget.add(device_id)

    def discard(self, device_ids: Sequence[str]) -> None:
        """Drop cached trackers after a failed commit (they counted unstored events)."""
        for device_id in device_ids:
            self._trackers.pop(device_id, None)

    def refresh(self, conn: sa.Connection, *, force: bool = False) -> None:
        """Rebuild the rule set if the stored configuration changed."""
        now = time.monotonic()
        if not force and now < self._next_poll:
            return
        self._next_poll = now + self._poll_seconds
        self._group_names.clear()  # renamed groups show within a poll too
        revision = rules_revision_of(conn)
        if self._built is not None and revision == self._built.revision:
            return
        built = build_rules(load_rule_config(conn))
        try:
            ruleset = compile_rules(built)
        except RuleError as exc:  # build_rules leaves out what does not compile
            log.error("rule set %d not compiled, keeping the previous one: %s", revision, exc)
            return
        self._built, self._ruleset = built, ruleset
        log.info(
            "rules revision %d: %d rules enabled",
            revision,
            sum(1 for r in built.rules if r.enabled),
        )

    def evaluate(
        self,
        conn: sa.Connection,
        batches: Sequence[StoredBatch],
        floors: Mapping[str, tuple[int, int]],
        *,
        now_us: int,
    ) -> RecordedAlerts | None:
        """Evaluate the batches' new rows (seq above the device's floor before this
        transaction) and record the alerts; None when nothing matched."""
        with self._forget_lock:
            forget, self._forget = self._forget, set()
        for device_id in forget:
            self._trackers.pop(device_id, None)
        self.refresh(conn)
        ruleset = self._ruleset
        kinds = ruleset.kinds
        if not kinds:
            return None
        threshold_kinds = ruleset.threshold_kinds
        evaluate = ruleset.evaluate
        found: list[AlertMatch] = []
        counted: dict[str, ThresholdTracker] = {}
        seen: dict[str, int] = {}
        for batch in batches:
            device_id = batch.device_id
            known = floors.get(device_id)
            if known is None:
                continue
            group_id, floor = known
            floor = max(floor, seen.get(device_id, 0))
            group: str | int | None = -1
            tracker: ThresholdTracker | None = None
            payloads = batch.payloads
            for at, row in enumerate(batch.rows):
                seq = row[1]
                if seq <= floor:
                    continue
                floor = seq
                kind = row[4]
                if kind not in kinds:
                    continue
                if group == -1:
                    group = self._group_name(conn, group_id)
                if kind in threshold_kinds and tracker is None:
                    tracker = counted[device_id] = self._tracker(conn, device_id)
                payload = payloads[at] if payloads is not None else _decode_payload(kind, row[6])
                if payload is None:
                    continue
                event = EvalEvent(device_id, group, kind, row[2], row[5], payload)  # type: ignore[arg-type]
                for match in evaluate(event, tracker):
                    found.append(
                        AlertMatch(
                            rule_id=match.rule.id,
                            title=match.rule.title,
                            severity=match.rule.severity,
                            device_id=device_id,
                            key=match_key(match),
                            time_us=row[2],
                            summary=match_summary(match, row[7], row[8]),
                            count=match.count,
                            seq=seq,
                        )
                    )
            seen[device_id] = floor
        if counted:
            self._save_trackers(conn, counted, now_us)
        if not found:
            return None
        return record_alert_matches(conn, found, now_us=now_us)

    def _group_name(self, conn: sa.Connection, group_id: int) -> str | None:
        if group_id in self._group_names:
            return self._group_names[group_id]
        name = conn.execute(
            sa.select(groups.c.name).where(groups.c.id == group_id)
        ).scalar_one_or_none()
        self._group_names[group_id] = name
        return name

    def _tracker(self, conn: sa.Connection, device_id: str) -> ThresholdTracker:
        tracker = self._trackers.get(device_id)
        if tracker is not None:
            return tracker
        text = conn.execute(
            sa.select(rule_state.c.state).where(rule_state.c.device_id == device_id)
        ).scalar_one_or_none()
        tracker = ThresholdTracker()
        if text is not None:
            try:
                tracker = ThresholdTracker.from_state(_decode(text))
            except (RuleError, msgspec.DecodeError) as exc:
                log.error(
                    "threshold state of device %s unreadable, starting over: %s", device_id, exc
                )
        self._trackers[device_id] = tracker
        return tracker

    def _save_trackers(
        self, conn: sa.Connection, trackers: Mapping[str, ThresholdTracker], now_us: int
    ) -> None:
        longest = self._ruleset.longest_window_us
        rows = []
        for device_id, tracker in sorted(trackers.items()):
            tracker.expire(now_us, longest)
            rows.append(
                {
                    "device_id": device_id,
                    "state": _encode(tracker.export_state()).decode("utf-8"),
                    "updated_us": now_us,
                }
            )
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        statement = insert(rule_state)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[rule_state.c.device_id],
                set_={
                    "state": statement.excluded.state,
                    "updated_us": statement.excluded.updated_us,
                },
            ),
            rows,
        )
