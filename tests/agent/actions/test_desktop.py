"""message, lock and logoff for real: on a real X server (Xvfb with openbox) and real
processes of a throwaway user. Handlers are called directly (the executor's checks
are tested in test_executor.py); the displays come from the ``displays`` hook as the
runtime gives them."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest
from Xlib import X

from sekimori.agent.actions.desktop import (
    MESSAGE_TITLE,
    keyboard_grabbed,
    known_displays,
    lock_screen,
    logoff,
    show_message,
)
from sekimori.agent.platform.linux.display import DisplayTarget
from sekimori.agent.platform.linux.x11 import _open_display
from sekimori.protocol.actions import LockParams, LogoffParams, MessageParams
from tests.agent.actions.handler_context import context
from tests.desktop import Desktop, desktop_fixture  # noqa: F401 - the fixture
from tests.processes import wait_for

THROWAWAY_USER = "sekimori-logoff-test"


def _target(desktop: Desktop) -> DisplayTarget:
    return DisplayTarget(desktop.display, str(desktop.xauthority), None, "settings")


def test_message_is_shown_and_dismissed_with_enter(desktop: Desktop, tmp_path: Path) -> None:
    message = "Please save your work: restart at 18:00"
    ctx = context(MessageParams(text=message, title="IT"), tmp_path)
    ctx.hooks["displays"] = lambda: [_target(desktop)]
    outcome = asyncio.run(show_message(ctx.body.params, ctx))
    assert outcome.status == "done", outcome
    assert outcome.output == f"shown on {desktop.display}"
    window = desktop.wait_window(f"^{MESSAGE_TITLE}: IT$")
    prop = subprocess.run(
        ["xprop", "-id", str(window), "_SEKIMORI_MESSAGE"],
        env=desktop.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert message in prop
    desktop.focus(window)
    desktop.xdotool("key", "Return")

    def gone() -> bool:
        listed = subprocess.run(
            ["xdotool", "search", "--name", MESSAGE_TITLE],
            env=desktop.env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return not listed.strip()

    wait_for(gone, 10, "the message window to close after Enter")


def test_message_without_a_display_fails(tmp_path: Path) -> None:
    ctx = context(MessageParams(text="hello"), tmp_path)
    ctx.hooks["displays"] = list
    outcome = asyncio.run(show_message(ctx.body.params, ctx))
    assert (outcome.status, outcome.reason) == ("failed", "no X display to show the message on")


@pytest.mark.skipif(shutil.which("i3lock") is None, reason="i3lock missing: scripts/system-deps.sh")
def test_lock_grabs_the_keyboard(desktop: Desktop, tmp_path: Path) -> None:
    target = _target(desktop)
    assert not keyboard_grabbed(target)
    ctx = context(LockParams(), tmp_path)
    ctx.hooks["displays"] = lambda: [target]
    outcome = asyncio.run(lock_screen(ctx.body.params, ctx))
    pid = 0
    try:
        assert outcome.status == "done", outcome
        # loginctl (no logind here) and xdg-screensaver (no screensaver) cannot lock
        # this desktop: the handler saw that and went on to a locker program.
        assert "i3lock (pid " in outcome.output
        pid = int(outcome.output.rsplit("pid ", 1)[1].rstrip(")"))
        # Another client cannot take the keyboard: the locker holds it.
        conn = _open_display(desktop.display, str(desktop.xauthority))
        try:
            status = conn.screen().root.grab_keyboard(
                False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime
            )
            assert status == X.AlreadyGrabbed
        finally:
            conn.close()
        # Typing goes to the locker, not to a terminal.
        again = asyncio.run(lock_screen(ctx.body.params, ctx))
        assert again.output == "the screen was already locked"
    finally:
        if pid:
            os.kill(pid, 15)
    wait_for(lambda: not keyboard_grabbed(target), 10, "the keyboard released")


@pytest.fixture(scope="module")
def throwaway_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("creating a throwaway user needs root")
    try:
        return pwd.getpwnam(THROWAWAY_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", THROWAWAY_USER],
            check=True,
        )
        return pwd.getpwnam(THROWAWAY_USER)


def test_logoff_ends_every_process_of_the_user(
    throwaway_user: pwd.struct_passwd, tmp_path: Path
) -> None:
    uid = throwaway_user.pw_uid
    polite = subprocess.Popen(["sleep", "300"], user=uid, group=throwaway_user.pw_gid)
    # One that ignores SIGTERM: killed after the grace period.
    stubborn = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
        user=uid,
        group=throwaway_user.pw_gid,
    )
    bystander = subprocess.Popen(["sleep", "300"])  # root's: untouched
    try:
        ctx = context(LogoffParams(user=THROWAWAY_USER), tmp_path)
        ctx.hooks["logoff_grace_seconds"] = lambda: 1.0
        outcome = asyncio.run(logoff(ctx.body.params, ctx))
        assert outcome.status == "done", outcome
        assert "killed after 1 s" in outcome.output
        assert polite.wait(5) == -15
        assert stubborn.wait(5) == -9
        assert bystander.poll() is None
    finally:
        for proc in (polite, stubborn, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_logoff_refuses_root(tmp_path: Path) -> None:
    ctx = context(LogoffParams(user="root"), tmp_path)
    outcome = asyncio.run(logoff(ctx.body.params, ctx))
    assert (outcome.status, outcome.reason) == ("failed", "refusing to log off root")


def test_known_displays_finds_the_running_x_sessions(
    desktop: Desktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [t.display for t in known_displays(desktop.display)] == [desktop.display]
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    # No setting, no $DISPLAY: every X session found through processes' environments
    # (openbox and the test's clients run with this desktop's DISPLAY).
    assert desktop.display in [t.display for t in known_displays()]
