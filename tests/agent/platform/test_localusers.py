"""Local accounts from a passwd file written in the test, and uid → name on this PC."""

from __future__ import annotations

from pathlib import Path

from sekimori.agent.platform.linux.localusers import LocalUser, local_users, user_name


def test_human_local_users_with_a_home(tmp_path: Path) -> None:
    homes = tmp_path / "home"
    for name in ("alice", "bob", "dave"):
        (homes / name).mkdir(parents=True)
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        f"alice:x:1000:1000:Alice:{homes / 'alice'}:/bin/bash\n"
        f"bob:x:1001:1001:Bob:{homes / 'bob'}:/usr/sbin/nologin\n"
        f"carol:x:1002:1002:Carol:{homes / 'carol'}:/bin/bash\n"
        f"dave:x:70000:70000:Dave:{homes / 'dave'}:/bin/zsh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        "broken line\n"
    )
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\n")
    assert local_users(passwd, defs) == [LocalUser("alice", 1000, str(homes / "alice"))]

    defs.write_text("UID_MIN 1000\nUID_MAX 80000\n")
    assert [u.name for u in local_users(passwd, defs)] == ["alice", "dave"]
    # Without login.defs the usual range applies.
    assert [u.name for u in local_users(passwd, tmp_path / "none")] == ["alice"]


def test_user_name_of_real_uids() -> None:
    assert user_name(0) == "root"
    assert user_name(65534) == "nobody"
    assert user_name(4_000_000) == "4000000"
