"""The operator keyring this PC trusts: pinned at enrollment, moved forward only by
steps its own operators signed.

``<state_dir>/operators.bin`` holds the encoded ``SignedKeyring`` of the version in
force (0600, written atomically). It is written:

* at enrollment, from ``enrolled.operators``, only if ``keyring_fingerprint(body)``
  equals the fingerprint the administrator typed (``--operators SHA256:<hex>``);
* by ``sekimori agent trust-operators FILE --fingerprint SHA256:<hex>`` on a PC
  enrolled without one;
* by ``apply_chain`` when the server pushes ``operators``: each step must follow the
  pinned version and carry a quorum of its operators' signatures
  (``verify_keyring_step``); a step that does not stops the chain, and the versions
  verified before it stay pinned.

The server's word alone never changes this file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sekimori.agent.identity import write_private
from sekimori.protocol.signing import (
    Keyring,
    Refused,
    SignedKeyring,
    decode_keyring,
    decode_signed_keyring,
    encode_signed_keyring,
    keyring_fingerprint,
    verify_keyring_step,
)

__all__ = [
    "OPERATORS_FILE",
    "ChainResult",
    "KeyringError",
    "PinnedKeyring",
    "apply_chain",
    "load_keyring",
    "parse_fingerprint",
    "pin_keyring",
]

log = logging.getLogger(__name__)

OPERATORS_FILE = "operators.bin"
_MAX_FILE_BYTES = 512 * 1024


class KeyringError(Exception):
    """A keyring that cannot be pinned (wrong fingerprint, not a keyring) or a pinned
    file that cannot be read; the message is meant for the PC's administrator."""


@dataclass(frozen=True)
class PinnedKeyring:
    signed: SignedKeyring
    keyring: Keyring

    @property
    def body(self) -> bytes:
        return self.signed.body

    @property
    def version(self) -> int:
        return self.keyring.version

    @property
    def fingerprint(self) -> str:
        return keyring_fingerprint(self.signed.body)


@dataclass(frozen=True)
class ChainResult:
    pinned: PinnedKeyring | None
    ok: bool
    error: str = ""


def parse_fingerprint(text: str) -> str:
    """``SHA256:<64 hex>`` (or the bare hex, colons allowed) -> lower-case hex."""
    value = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise KeyringError("the operators fingerprint must be SHA256: and 64 hexadecimal digits")
    return value


def _decode(data: bytes) -> PinnedKeyring:
    try:
        signed = decode_signed_keyring(data)
        keyring = decode_keyring(signed.body)
    except ValueError as exc:
        raise KeyringError(str(exc)) from None
    return PinnedKeyring(signed, keyring)


def load_keyring(state_dir: Path) -> PinnedKeyring | None:
    """The pinned keyring, or None when none was pinned. Raises ``KeyringError`` for a
    file that is there but unreadable (the executor then refuses every signed action:
    it never falls back to trusting nothing-or-anything)."""
    path = state_dir / OPERATORS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyringError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise KeyringError(f"{path} is too large to be a keyring")
    try:
        return _decode(data)
    except KeyringError as exc:
        raise KeyringError(f"{path} is not a valid keyring: {exc}") from None


def _write(state_dir: Path, pinned: PinnedKeyring) -> None:
    write_private(state_dir / OPERATORS_FILE, encode_signed_keyring(pinned.signed))


def pin_keyring(state_dir: Path, signed_bytes: bytes, fingerprint: str) -> PinnedKeyring:
    """Pin ``signed_bytes`` (an encoded ``SignedKeyring``) if its body has
    ``fingerprint``; raises ``KeyringError`` and writes nothing otherwise. Replaces a
    keyring pinned before (the administrator's explicit choice)."""
    expected = parse_fingerprint(fingerprint)
    pinned = _decode(signed_bytes)
    actual = pinned.fingerprint
    if actual != expected:
        raise KeyringError(
            f"the operator keyring's fingerprint is SHA256:{actual}, not the pinned "
            f"SHA256:{expected}: refusing to trust it"
        )
    _write(state_dir, pinned)
    return pinned


def apply_chain(
    state_dir: Path, current: PinnedKeyring | None, chain: Sequence[SignedKeyring]
) -> ChainResult:
    """Move the pinned keyring forward along ``chain`` (oldest first). Versions at or
    below the pinned one are skipped (the server may send the whole chain). Each
    accepted step is written before the next is looked at, so a bad step keeps what
    was verified before it."""
    if current is None:
        return ChainResult(None, False, "no operator keyring pinned on this PC")
    pinned = current
    for step in chain:
        try:
            version = decode_keyring(step.body).version
        except ValueError as exc:
            return ChainResult(pinned, False, str(exc)[:2000])
        if version <= pinned.version:
            continue
        try:
            new = verify_keyring_step(pinned.keyring, pinned.body, step)
        except Refused as exc:
            log.warning("operator keyring version %d refused: %s", version, exc.reason)
            return ChainResult(pinned, False, f"version {version}: {exc.reason}"[:2000])
        pinned = PinnedKeyring(step, new)
        _write(state_dir, pinned)
        log.info("operator keyring version %d pinned", new.version)
    return ChainResult(pinned, True)
