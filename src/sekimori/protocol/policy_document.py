"""A policy as it travels in ``PolicyUpdate.document``: JSON bytes, checked strictly.

The server encodes the group's typed ``Policy`` (``encode_policy_document``); the
agent decodes and checks it (``decode_policy_document``) before it changes anything,
and answers a document it cannot accept with ``policy_applied(ok=False)`` carrying
the error's text. The checks are the types' (unknown fields, ranges, lengths, the
clock-time pattern) and what the agent needs to apply it: a time zone this PC
knows, a working-hours window that is not empty, a day listed once, and notice text
in both languages when the notice is on.
"""

from __future__ import annotations

import re
import zoneinfo

import msgspec

from sekimori.protocol.errors import InvalidMessage
from sekimori.protocol.messages import MAX_POLICY_DOCUMENT_BYTES
from sekimori.protocol.policy import Policy

__all__ = ["InvalidPolicy", "decode_policy_document", "encode_policy_document"]

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_decoder = msgspec.json.Decoder(Policy)
_encoder = msgspec.json.Encoder()


class InvalidPolicy(InvalidMessage):
    """The document is not a policy this agent can apply. ``path`` is the dotted
    field ("" for the whole document); ``str()`` is "path: what is wrong"."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def encode_policy_document(policy: Policy) -> bytes:
    """The JSON document for ``policy``. Raises InvalidPolicy if it is too large to send."""
    document = _encoder.encode(policy)
    if len(document) > MAX_POLICY_DOCUMENT_BYTES:
        raise InvalidPolicy(
            "", f"the policy is {len(document)} bytes; at most {MAX_POLICY_DOCUMENT_BYTES}"
        )
    return document


def decode_policy_document(document: bytes) -> Policy:
    """The typed policy in ``document``. Raises InvalidPolicy (and nothing else)."""
    if len(document) > MAX_POLICY_DOCUMENT_BYTES:
        raise InvalidPolicy("", f"a policy document is at most {MAX_POLICY_DOCUMENT_BYTES} bytes")
    try:
        policy = _decoder.decode(document)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        message, path = (match["message"], match["path"] or "") if match else (str(exc), "")
        raise InvalidPolicy(path.lstrip("."), message[:1].lower() + message[1:]) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidPolicy("", f"not a JSON policy document: {exc}") from None
    _check(policy)
    return policy


def _check(policy: Policy) -> None:
    hours = policy.privacy.working_hours_only
    if hours is not None:
        where = "privacy.working_hours_only"
        try:
            zoneinfo.ZoneInfo(hours.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidPolicy(
                f"{where}.timezone", f"time zone {hours.timezone!r} is not known on this PC"
            ) from None
        if hours.start == hours.end:
            raise InvalidPolicy(f"{where}.to", "must differ from `from`")
        if len(set(hours.days)) != len(hours.days):
            raise InvalidPolicy(f"{where}.days", "lists a day twice")
    notice = policy.notice_mode
    if notice.enabled and not (notice.text_en.strip() and notice.text_ja.strip()):
        raise InvalidPolicy("notice_mode", "a notice needs its text in English and Japanese")
