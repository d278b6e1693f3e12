"""Operator key files and offline signing: ``sekimori operator keygen`` and
``sekimori sign``. Nothing here talks to the server: an operator can keep the key on
a machine that never reaches it and carry requests and signatures by file.

Files:
- private key: Ed25519 PKCS#8 PEM, mode 0600, optionally encrypted with a passphrase;
- public key (``<name>.pub.pem``): an ``Operator: <name>`` line, then the
  SubjectPublicKeyInfo PEM (what ``sekimori operators init|propose --key`` reads);
- request (``sekimori action export`` / ``operators export``): the exact body bytes
  operators sign (a command or a keyring);
- signature: a msgpack ``Signature``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sekimori.cli.common import CommandError
from sekimori.clock import format_us
from sekimori.protocol.actions import (
    Signature,
    command_digest,
    decode_command_body,
)
from sekimori.protocol.signing import (
    OperatorKey,
    decode_keyring,
    key_id,
    keyring_digest,
    sign_ed25519,
)

__all__ = [
    "describe_request",
    "keygen",
    "load_private_key",
    "load_public_key",
    "public_path",
    "read_signature",
    "sign_file",
    "sign_request",
    "signature_bytes",
]

_signature_decoder = msgspec.msgpack.Decoder(Signature)
_encoder = msgspec.msgpack.Encoder()


def public_path(private: Path) -> Path:
    name = private.name[:-4] if private.name.endswith(".pem") else private.name
    return private.with_name(f"{name}.pub.pem")


def _passphrase(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        text = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise CommandError(f"cannot read the passphrase file: {exc}") from None
    if not text:
        raise CommandError("the passphrase file is empty")
    return text


def keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    pub = public_path(out)
    name = args.name.strip()
    if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise CommandError("--name must be 1-128 printable characters")
    passphrase = _passphrase(args.passphrase_file)
    private = ed25519.Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{out} exists: choose another --out") from None
    except OSError as exc:
        raise CommandError(f"cannot create {out}: {exc}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    pub.write_bytes(f"Operator: {name}\n".encode() + public_pem)
    print(f"key id:     {key_id(der)}")
    print(f"operator:   {name}")
    print(f"private key {out} (mode 0600{', encrypted' if passphrase else ''}): keep it secret")
    print(f"public key  {pub}: give it to whoever runs `sekimori operators init|propose`")
    return 0


def load_public_key(path: str, label: str = "") -> OperatorKey:
    """An ``OperatorKey`` from a public key file written by ``keygen``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    operator = ""
    for line in data.splitlines():
        if line.startswith(b"Operator:"):
            operator = line.split(b":", 1)[1].strip().decode(errors="replace")
            break
    if not operator:
        raise CommandError(f"{path}: no 'Operator: <name>' line (made by `operator keygen`?)")
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise CommandError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise CommandError(f"{path}: not an Ed25519 key")
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return OperatorKey(
        key_id=key_id(der), operator=operator, label=label, kind="ed25519", public_key=der
    )


def load_private_key(path: str, passphrase_file: str | None = None) -> ed25519.Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    try:
        key = serialization.load_pem_private_key(data, _passphrase(passphrase_file))
    except TypeError:
        raise CommandError(f"{path} is encrypted: give --passphrase-file") from None
    except ValueError as exc:
        raise CommandError(f"{path}: cannot load the private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise CommandError(f"{path}: not an Ed25519 operator key")
    return key


def describe_request(body: bytes) -> tuple[str, bytes]:
    """In words, what signing ``body`` approves; and the digest to sign. Raises
    ``CommandError`` for bytes that are neither a command nor a keyring."""
    try:
        command = decode_command_body(body)
    except ValueError:
        command = None
    if command is not None:
        params = msgspec.to_builtins(command.params)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "action") or "-"
        text = (
            f"COMMAND {command.action} on {command.device_count} device(s)\n"
            f"  parameters: {shown}\n"
            f"  requested by {command.requested_by}"
            + (f", reason: {command.reason}" if command.reason else "")
            + f"\n  valid {format_us(command.issued_at_us)} .. {format_us(command.expires_at_us)}"
            f"\n  deployment {command.deployment}, nonce {command.nonce}"
            f"\n  devices root {command.devices_root}"
        )
        return text, command_digest(body)
    try:
        keyring = decode_keyring(body)
    except ValueError:
        raise CommandError("the file is neither a command nor an operator keyring") from None
    keys = "\n".join(f"    {k.key_id[:16]}  {k.operator}  ({k.kind})" for k in keyring.keys)
    text = (
        f"OPERATOR KEYRING version {keyring.version} of deployment {keyring.deployment}\n"
        f"  quorum {keyring.quorum}, fleet threshold {keyring.fleet_threshold}, "
        f"commands live at most {keyring.max_command_seconds} s\n"
        f"  follows version digest {keyring.previous_sha256 or '-'}\n"
        f"  keys:\n{keys}"
    )
    return text, keyring_digest(body)


def sign_request(body: bytes, key: ed25519.Ed25519PrivateKey) -> tuple[str, Signature]:
    text, digest = describe_request(body)
    return text, sign_ed25519(key, digest)


def signature_bytes(signature: Signature) -> bytes:
    return _encoder.encode(signature)


def read_signature(path: str) -> Signature:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    try:
        return _signature_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CommandError(f"{path}: not a signature made by `sekimori sign` ({exc})") from None


def sign_file(args: argparse.Namespace) -> int:
    """``sekimori sign FILE --key KEY``: says what is signed, writes the signature to
    --out or standard output."""
    try:
        body = Path(args.file).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc}") from None
    key = load_private_key(args.key, args.passphrase_file)
    text, signature = sign_request(body, key)
    print("Signing:", file=sys.stderr)
    print(text, file=sys.stderr)
    print(f"with key {signature.key_id}", file=sys.stderr)
    data = signature_bytes(signature)
    if args.out:
        Path(args.out).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
