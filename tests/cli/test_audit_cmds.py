"""``sekimori audit list`` and ``audit verify`` on a running server's store."""

from __future__ import annotations

import json

from sekimori.server.store.audit import append_audit
from tests.processes import ServerProcess


def test_list_filters_and_prints_oldest_first(server: ServerProcess) -> None:
    engine = server.engine()
    append_audit(engine, actor="alice", action="logs.search", target="pc-1", detail={"q": "x"})
    append_audit(engine, actor="bob", action="login", client_ip="192.0.2.9")
    append_audit(engine, actor="alice", action="login", client_ip="192.0.2.8")
    everything = server.cli("audit", "list")
    assert everything.returncode == 0, everything.stderr
    lines = everything.stdout.splitlines()
    assert [line.split()[2:4] for line in lines[-3:]] == [
        ["alice", "logs.search"],
        ["bob", "login"],
        ["alice", "login"],
    ]
    alice = server.cli("audit", "list", "--actor", "alice", "--json")
    rows = [json.loads(line) for line in alice.stdout.splitlines()]
    assert [r["action"] for r in rows] == ["logs.search", "login"]
    assert rows[0]["detail"] == {"q": "x"} and rows[0]["target"] == "pc-1"
    assert rows[0]["seq"] < rows[1]["seq"] and len(rows[0]["hash"]) == 64
    logins = server.cli("audit", "list", "--action", "login", "--since", "1h", "--json")
    assert [json.loads(x)["actor"] for x in logins.stdout.splitlines()] == ["bob", "alice"]
    newest = server.cli("audit", "list", "--limit", "1", "--json")
    assert [json.loads(x)["actor"] for x in newest.stdout.splitlines()] == ["alice"]
    none = server.cli("audit", "list", "--actor", "nobody")
    assert none.returncode == 0 and "(no audit entries match)" in none.stdout
    bad = server.cli("audit", "list", "--since", "yesterday")
    assert bad.returncode == 1 and "invalid duration" in bad.stderr


def test_verify_counts_the_entries(server: ServerProcess) -> None:
    for i in range(5):
        append_audit(server.engine(), actor="carol", action="audit.view", target=str(i))
    done = server.cli("audit", "verify")
    assert done.returncode == 0, done.stderr
    count = server.scalar("SELECT count(*) FROM audit_log")
    assert done.stdout == f"{count} entries, chain intact\n"
    with server.engine().begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE actor = 'carol'")
    broken = server.cli("audit", "verify")
    assert broken.returncode == 1
    assert broken.stdout.count("its content was changed") == 5
