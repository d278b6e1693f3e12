"""A window that records where it is clicked: ``python click_target.py LOG X Y W H``
maps an override-redirect window at (X, Y) of size W x H and appends
``button <n> <root x> <root y>`` to LOG for each button press ("ready" once mapped).
Run by tests/agent/test_remote_control.py on an Xvfb display."""

from __future__ import annotations

import sys

from Xlib import X
from Xlib.display import Display


def main() -> None:
    log, x, y, width, height = sys.argv[1], *map(int, sys.argv[2:6])
    display = Display()
    screen = display.screen()
    window = screen.root.create_window(
        x,
        y,
        width,
        height,
        0,
        screen.root_depth,
        X.InputOutput,
        X.CopyFromParent,
        override_redirect=True,
        background_pixel=screen.white_pixel,
        event_mask=X.ButtonPressMask | X.StructureNotifyMask,
    )
    window.set_wm_name("click target")
    window.map()
    display.sync()
    with open(log, "a", encoding="utf-8") as out:
        while True:
            event = display.next_event()
            if event.type == X.MapNotify:
                out.write("ready\n")
            elif event.type == X.ButtonPress:
                out.write(f"button {event.detail} {event.root_x} {event.root_y}\n")
            out.flush()


if __name__ == "__main__":
    main()
