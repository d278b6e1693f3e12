"""The action form's parser: any submitted text gives either typed parameters or an
error on a named field — never an exception — and good input gives exactly the
parameters the form said."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol.actions import (
    ACTION_NAMES,
    KillProcessParams,
    RestartParams,
    RunScriptParams,
)
from sekimori.server.console.action_form import (
    ACTION_LABELS,
    describe_params,
    parse_params,
)
from sekimori.server.store.actions import LibraryRow

FIELDS = [
    "text",
    "title",
    "monitor",
    "user",
    "delay_seconds",
    "notice",
    "pid",
    "process_name",
    "start_time_us",
    "signal",
    "path",
    "max_bytes",
    "script",
    "args",
    "timeout_seconds",
    "run_as",
    "package",
    "package_name",
    "purge",
    "max_seconds",
]
SCRIPT = LibraryRow("a" * 64, "script", "hello", "hello.sh", "bash", 10, "alice", 1)


def test_every_action_has_a_label() -> None:
    assert set(ACTION_LABELS) == set(ACTION_NAMES)


@given(
    st.sampled_from([*ACTION_NAMES, "nope", ""]),
    st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=30)),
)
def test_any_input_gives_parameters_or_a_field_error(action: str, form: dict[str, str]) -> None:
    parsed = parse_params(action, form, {SCRIPT.sha256: SCRIPT})
    assert (parsed.params is None) == bool(parsed.errors)
    for name in parsed.errors:
        assert name in {*FIELDS, "action"}
    if parsed.params is not None:
        assert describe_params(parsed.params) is not None


def test_good_input_gives_those_parameters() -> None:
    parsed = parse_params(
        "kill_process", {"pid": "4242", "process_name": "sleep", "signal": "KILL"}, {}
    )
    assert parsed.params == KillProcessParams(pid=4242, name="sleep", signal="KILL")
    parsed = parse_params("restart", {"delay_seconds": "0", "notice": " bye "}, {})
    assert parsed.params == RestartParams(delay_seconds=0, message="bye")
    parsed = parse_params(
        "run_script", {"script": SCRIPT.sha256, "args": "-v\n\nx y\n"}, {SCRIPT.sha256: SCRIPT}
    )
    assert parsed.params == RunScriptParams(
        name="hello", sha256=SCRIPT.sha256, interpreter="bash", args=["-v", "x y"]
    )


def test_errors_name_the_form_field() -> None:
    assert set(parse_params("kill_process", {"pid": "1", "process_name": "x"}, {}).errors) == {
        "pid"
    }
    assert set(parse_params("kill_process", {"pid": "9"}, {}).errors) == {"process_name"}
    assert set(parse_params("remove_package", {"package_name": "Bad Name"}, {}).errors) == {
        "package_name"
    }
    assert set(parse_params("run_script", {"script": "b" * 64}, {}).errors) == {"script"}
    assert set(parse_params("restart", {"delay_seconds": "9999"}, {}).errors) == {"delay_seconds"}
