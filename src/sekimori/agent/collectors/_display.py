"""Finding the X display a collector watches (window, screens), as a collector error.

A Wayland or remote session is permanent (nothing to watch here). No display at all
is permanent only on a PC that never had an X session: one whose collector has a
cursor (it watched a display before) is between sessions — someone logged out — and
retrying finds the next session's display.
"""

from __future__ import annotations

import os
from pathlib import Path

from sekimori.agent.collectors.base import CollectorError, Sink
from sekimori.agent.platform.linux.display import (
    DisplayTarget,
    NoDisplay,
    RemoteDisplay,
    WaylandSession,
    find_display,
)

__all__ = ["collector_display"]


def collector_display(
    *, display: str, xauthority: str, sink: Sink, socket_dir: Path, proc: Path
) -> DisplayTarget:
    """The display to watch. Raises CollectorError (permanent or not, as above)."""
    try:
        return find_display(
            display=display,
            xauthority=xauthority,
            env=os.environ,
            socket_dir=socket_dir,
            proc=proc,
        )
    except (WaylandSession, RemoteDisplay) as exc:
        raise CollectorError(str(exc), permanent=True) from None
    except NoDisplay as exc:
        was_watched = sink.cursor() is not None
        raise CollectorError(str(exc), permanent=not was_watched) from None
