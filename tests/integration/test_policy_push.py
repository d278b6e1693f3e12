"""Collection policies end to end: a real server, a real enrolled agent with its file
collector, and policies saved in the store as the console saves them.

A saved version reaches the connected agent within seconds and changes what it
records; the agent keeps it and applies it at its next start without the server; an
agent that was offline gets the version saved meanwhile when it reconnects; a policy
the agent cannot apply is refused with ``policy_applied(ok=False)`` and changes
nothing.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from sekimori.clock import now_us
from sekimori.protocol.policy import (
    COLLECTOR_NAMES,
    CollectorPolicies,
    FilesPolicy,
    NoticeMode,
    Policy,
    PrivacyPolicy,
    WorkingHours,
)
from sekimori.server.store.policies import save_policy
from sekimori.server.store.schema import policies
from tests.processes import AgentProcess, ServerProcess, wait_for

NOTICE = NoticeMode(
    enabled=True,
    text_en="This PC records the files you create in the shared folder.",
    text_ja="このPCは共有フォルダーに作成したファイルを記録します。",
)


def _only_files(files: FilesPolicy, **rest: Any) -> Policy:
    """A policy that runs the file collector as given and switches every other off."""
    sections: dict[str, Any] = {name: {"enabled": False} for name in COLLECTOR_NAMES}
    sections["files"] = msgspec.to_builtins(files)
    return Policy(collectors=msgspec.convert(sections, CollectorPolicies), **rest)


def _group_id(server: ServerProcess) -> int:
    return server.scalar("SELECT id FROM groups WHERE name = 'default'")


def _save(server: ServerProcess, policy: Policy) -> int:
    return save_policy(server.engine(), _group_id(server), policy, "test", now_us=now_us())


def _applied(server: ServerProcess, device_id: str) -> int | None:
    with server.engine().connect() as conn:
        version = conn.execute(
            sa.text("SELECT version FROM device_policy WHERE device_id = :id"), {"id": device_id}
        ).scalar()
    return None if version is None else int(version)


def _events(server: ServerProcess, device_id: str, kind: str) -> list[dict[str, Any]]:
    """Stored payloads of ``kind``, oldest first (read from the store directly: the
    ``events`` CLI starts a process per call, too slow to poll)."""
    with server.engine().connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT payload FROM events WHERE device_id = :id AND kind = :kind ORDER BY seq"
            ),
            {"id": device_id, "kind": kind},
        )
        return [json.loads(payload) for (payload,) in rows]


def _created(server: ServerProcess, device_id: str) -> list[str]:
    return [Path(p["path"]).name for p in _events(server, device_id, "file.created")]


def _outbox(state_dir: Path, kind: str) -> list[dict[str, Any]]:
    """Events still in the agent's outbox (it is offline): read beside the agent."""
    db = sqlite3.connect(f"file:{state_dir / 'outbox.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT payload FROM outbox WHERE kind = ? ORDER BY seq", (kind,))
        return [msgspec.msgpack.decode(payload) for (payload,) in rows]
    finally:
        db.close()


def _agent(tmp_path: Path, home: Path) -> AgentProcess:
    agent = AgentProcess(tmp_path / "pc", collectors=("files",))
    agent.env.update(
        SEKIMORI_AGENT__COLLECTORS__FILES__PATHS=json.dumps([str(home)]),
        SEKIMORI_AGENT__NOTICE_PATH=str(tmp_path / "run" / "notice.txt"),
    )
    return agent


def _record_until_seen(server: ServerProcess, device_id: str, folder: Path, stem: str) -> str:
    """Create files in ``folder`` until one is recorded (the restarted collector sets
    its watches up just after the agent reports the policy applied); returns its name."""
    made: list[str] = []

    def seen() -> bool:
        name = f"{stem}-{len(made)}.txt"
        (folder / name).write_text("x\n")
        made.append(name)
        return bool(set(made) & set(_created(server, device_id)))

    wait_for(seen, 20, f"a file in {folder} recorded", 0.5)
    return sorted(set(made) & set(_created(server, device_id)))[0]


def test_a_policy_changes_what_the_agent_records_within_seconds(
    server: ServerProcess, tmp_path: Path
) -> None:
    identity = server.enroll(tmp_path / "pc")
    device = identity.device_id
    home, share = tmp_path / "home", tmp_path / "share"
    home.mkdir()
    share.mkdir()
    agent = _agent(tmp_path, home).start()
    try:
        # The group has no policy yet: the default (version 0), the agent's own settings.
        wait_for(lambda: _applied(server, device) == 0, 30, "default policy applied")
        _record_until_seen(server, device, home, "before")

        # Version 1: watch the shared folder instead, and show a notice.
        assert _save(server, _only_files(FilesPolicy(paths=[str(share)]), notice_mode=NOTICE)) == 1
        took = wait_for(lambda: _applied(server, device) == 1, 15, "version 1 applied")
        assert took < 5, f"version 1 took {took:.1f} s to apply"

        def applied_events() -> list[dict[str, Any]]:
            return [p for p in _events(server, device, "agent.policy_applied") if p["version"] == 1]

        wait_for(lambda: bool(applied_events()), 10, "agent.policy_applied stored")
        assert applied_events() == [
            {
                "group": "default",
                "version": 1,
                "ok": True,
                "restarted": ["files"],
                "error": "",
                "source": "server",
            }
        ]
        _record_until_seen(server, device, share, "shared")
        (home / "private.txt").write_text("not watched any more\n")
        last = _record_until_seen(server, device, share, "after")
        assert "private.txt" not in _created(server, device), f"{last} seen, private.txt not"

        # The notice, readable by the PC's user, and through the CLI.
        public = tmp_path / "run" / "notice.txt"
        assert stat.S_IMODE(public.stat().st_mode) == 0o644
        assert NOTICE.text_ja in public.read_text(encoding="utf-8")
        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "sekimori",
                "agent",
                "notice",
                "--state-dir",
                str(agent.state_dir),
            ],
            env=agent.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert NOTICE.text_en in shown.stdout and NOTICE.text_ja in shown.stdout
        wait_for(lambda: bool(_events(server, device, "agent.notice_updated")), 10, "notice event")
        (notice,) = _events(server, device, "agent.notice_updated")
        assert notice["enabled"] and notice["version"] == 1 and str(public) in notice["paths"]

        # Version 2: the file collector off. Its events stop.
        assert _save(server, _only_files(FilesPolicy(enabled=False), notice_mode=NOTICE)) == 2
        wait_for(lambda: _applied(server, device) == 2, 15, "version 2 applied")
        wait_for(
            lambda: any(
                h["collector"] == "files" and h["reason"] == "disabled by policy"
                for h in _events(server, device, "agent.collector_health")
            ),
            10,
            "file collector reported disabled",
        )
        (share / "unrecorded.txt").write_text("x\n")
        time.sleep(2)
        assert "unrecorded.txt" not in _created(server, device)
    finally:
        assert agent.stop() == 0

    # Offline: the server is down, and the agent starts with the kept version 2.
    server.stop()
    agent = _agent(tmp_path, home).start()
    try:
        wait_for(
            lambda: any(
                p["source"] == "stored" for p in _outbox(agent.state_dir, "agent.policy_applied")
            ),
            20,
            "kept policy applied at start",
        )
        kept = [
            p for p in _outbox(agent.state_dir, "agent.policy_applied") if p["source"] == "stored"
        ]
        assert [(p["group"], p["version"]) for p in kept] == [("default", 2)]
        health = [
            h
            for h in _outbox(agent.state_dir, "agent.collector_health")
            if h["collector"] == "files"
        ]
        assert health and {h["status"] for h in health} == {"disabled"}, health
        (home / "offline.txt").write_text("x\n")

        # Version 3 is saved while the agent is offline; it gets it on reconnect.
        assert _save(server, _only_files(FilesPolicy(paths=[str(home)]))) == 3
        server.start(pinned_ports=True)
        wait_for(lambda: _applied(server, device) == 3, 30, "version 3 applied on reconnect")
        _record_until_seen(server, device, home, "reconnected")
        assert "offline.txt" not in _created(server, device), "recorded while the policy said off"
        # The notice was withdrawn with version 3.
        assert not (tmp_path / "run" / "notice.txt").exists()
    finally:
        assert agent.stop() == 0


def test_a_policy_the_agent_cannot_apply_is_refused_and_changes_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    identity = server.enroll(tmp_path / "pc")
    device = identity.device_id
    home = tmp_path / "home"
    home.mkdir()
    agent = _agent(tmp_path, home).start()
    try:
        assert _save(server, _only_files(FilesPolicy(paths=[str(home)]))) == 1
        wait_for(lambda: _applied(server, device) == 1, 30, "version 1 applied")
        # Version 2 names a time zone this PC does not know (a server with newer time
        # zone data, or a row written around the console's validation): well-typed,
        # so the server sends it, and the agent refuses it.
        bad = _only_files(
            FilesPolicy(enabled=False),
            privacy=PrivacyPolicy(
                working_hours_only=WorkingHours(
                    days=["mon"], start="09:00", end="17:00", timezone="Mars/Olympus_Mons"
                )
            ),
        )
        with server.engine().begin() as conn:
            conn.execute(
                sa.insert(policies).values(
                    group_id=_group_id(server),
                    version=2,
                    created_us=now_us(),
                    created_by="test",
                    document=msgspec.json.encode(bad).decode(),
                    comment="",
                )
            )
        wait_for(
            lambda: "refused policy version 2" in server.log(), 15, "the refusal reaches the server"
        )
        wait_for(
            lambda: bool(
                [p for p in _events(server, device, "agent.policy_applied") if not p["ok"]]
            ),
            10,
            "the refusal recorded as an event",
        )
        refused = [p for p in _events(server, device, "agent.policy_applied") if not p["ok"]]
        assert refused[0]["version"] == 2
        assert refused[0]["error"].startswith(
            "privacy.working_hours_only.timezone: time zone 'Mars/Olympus_Mons' is not known"
        )
        # Nothing changed: still version 1, and the file collector still records.
        assert _applied(server, device) == 1
        _record_until_seen(server, device, home, "still")
        assert json.loads((tmp_path / "pc" / "policy.json").read_text())["version"] == 1
    finally:
        assert agent.stop() == 0
