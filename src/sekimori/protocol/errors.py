"""Protocol errors.

Exception tree::

    ProtocolError            a frame or message the peer must be told about
    ├── FrameTooLarge        the frame or its inflated body exceeds a limit
    ├── UnsupportedVersion   the frame's protocol version is not spoken here
    └── InvalidMessage       malformed bytes, wrong field types, bad sequence ranges

Every error carries a short machine-readable ``code`` and a human message that is safe
to send to the peer (no tracebacks, no internal paths). ``retryable`` says whether
sending the same thing again later can succeed.
"""

from __future__ import annotations

__all__ = ["FrameTooLarge", "InvalidMessage", "ProtocolError", "UnsupportedVersion"]


class ProtocolError(Exception):
    code = "protocol_error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FrameTooLarge(ProtocolError):
    code = "too_large"


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"


class InvalidMessage(ProtocolError):
    code = "invalid_message"
