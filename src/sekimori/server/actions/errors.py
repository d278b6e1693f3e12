"""The one domain error of the actions service.

Exception tree::

    ActionError            bad input or a state that does not allow it; the message
    │                      is safe to show to the operator (console, CLI)
    └── ActionNotFound     no such command, proposal or library item

Nothing is changed when one is raised. A retry cannot help unless the state changes
(another operator signs, a keyring is published).
"""

from __future__ import annotations

__all__ = ["ActionError", "ActionNotFound"]


class ActionError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActionNotFound(ActionError, LookupError):
    pass
