"""Split a test X display into monitors, as a PC with two screens side by side has.

Xvfb has one output; RandR 1.5 lets a client define monitors on it (what ``xrandr
--setmonitor`` does), and capture libraries list those like real ones. python-xlib's
own ``set_monitor`` cannot pack its request (0.33), so the request is built here.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from Xlib import display as xdisplay
from Xlib.protocol import rq

__all__ = ["split_monitors"]

_SET_MONITOR = 43


class _SetMonitor(rq.Request):
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(_SET_MONITOR),
        rq.RequestLength(),
        rq.Window("window"),
        rq.String8("info"),
    )


def split_monitors(
    display: str, xauthority: str, rects: Sequence[tuple[int, int, int, int]]
) -> None:
    """Replace the display's monitors by ``rects`` (x, y, width, height), first primary."""
    saved = os.environ.get("XAUTHORITY")
    os.environ["XAUTHORITY"] = xauthority
    try:
        conn = xdisplay.Display(display)
    finally:
        if saved is None:
            del os.environ["XAUTHORITY"]
        else:
            os.environ["XAUTHORITY"] = saved
    try:
        root = conn.screen().root
        randr = conn.query_extension("RANDR")
        if randr is None:
            raise AssertionError(f"{display} has no RandR extension")
        opcode = randr.major_opcode
        # A monitor naming an output hides that output's automatic monitor ("screen"
        # on Xvfb): the first one takes Xvfb's only output.
        output = root.xrandr_get_screen_resources().outputs[0]
        for i, (x, y, width, height) in enumerate(rects):
            outputs = [output] if i == 0 else []
            info = struct.pack(
                f"=IBBHhhHHII{len(outputs)}I",
                conn.intern_atom(f"SEKIMORI-{i}"),
                i == 0,  # primary
                0,  # not automatic
                len(outputs),
                x,
                y,
                width,
                height,
                width // 4,  # millimetres: about 100 dpi
                height // 4,
                *outputs,
            )
            _SetMonitor(display=conn.display, opcode=opcode, window=root, info=info)
        conn.sync()
    finally:
        conn.close()
