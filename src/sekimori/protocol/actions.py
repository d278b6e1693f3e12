"""Remote actions: what an operator can make a PC do, as signed, typed commands.

A command is a ``CommandBody`` encoded once as msgpack; those exact bytes travel inside
a ``SignedCommand`` together with the operators' signatures over their digest
(``command_digest``). Nobody re-encodes the body, so there is no canonical-form
problem: the agent verifies the signatures over the bytes it received, then decodes
them strictly.

A command is bound to the devices it targets through a Merkle tree of their ids: the
body carries the root and the number of devices, and each agent receives the path from
its own leaf to the root (``device_proof``). One signature covers a fleet-wide action
without shipping the whole list of device ids to every PC, and no PC outside the
list can be made to run it.

Low-risk actions (``LOW_RISK``) change nothing and read no file: the agent may run them
without any signature when its local action policy allows. Every other action needs
at least one operator signature, and two from different operators when the command
targets more devices than the deployment's ``fleet_threshold``
(``sekimori.protocol.signing``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Annotated, Final, Literal

import msgspec

__all__ = [
    "ACTION_NAMES",
    "COMMAND_FORMAT",
    "LOW_RISK",
    "MAX_ATTACHMENT_BYTES",
    "MAX_COMMAND_BODY_BYTES",
    "MAX_DATA_CHUNK_BYTES",
    "MAX_OUTPUT_CHARS",
    "ActionName",
    "ActionParams",
    "CollectFileParams",
    "CommandBody",
    "InstallPackageParams",
    "KillProcessParams",
    "LockParams",
    "LogoffParams",
    "MessageParams",
    "ProofStep",
    "RefreshInventoryParams",
    "RemoteControlParams",
    "RemovePackageParams",
    "RestartParams",
    "RunScriptParams",
    "ScreenshotParams",
    "ShutdownParams",
    "Signature",
    "SignedCommand",
    "command_digest",
    "decode_command_body",
    "decode_signed_command",
    "device_leaf",
    "encode_command_body",
    "encode_signed_command",
    "merkle_proof",
    "merkle_root",
    "verify_merkle_proof",
]

COMMAND_FORMAT: Final = "sekimori-action/1"
# The encoded body: a few KiB at most (a message text, a script's digest, a path).
MAX_COMMAND_BODY_BYTES: Final = 64 * 1024
# A script or package carried beside the command (in the ``action`` frame; the agent
# reads server frames of at most 4 MiB).
MAX_ATTACHMENT_BYTES: Final = 3 * 1024 * 1024
# Output of a script, package manager or command returned to the console.
MAX_OUTPUT_CHARS: Final = 64 * 1024
# A collected file travels in chunks of at most this size.
MAX_DATA_CHUNK_BYTES: Final = 1024 * 1024

ActionName = Literal[
    "message",
    "screenshot",
    "refresh_inventory",
    "lock",
    "logoff",
    "restart",
    "shutdown",
    "kill_process",
    "collect_file",
    "run_script",
    "install_package",
    "remove_package",
    "remote_control",
]
ACTION_NAMES: Final[tuple[ActionName, ...]] = (
    "message",
    "screenshot",
    "refresh_inventory",
    "lock",
    "logoff",
    "restart",
    "shutdown",
    "kill_process",
    "collect_file",
    "run_script",
    "install_package",
    "remove_package",
    "remote_control",
)
# Actions that change nothing on the PC and read none of its files.
LOW_RISK: Final[frozenset[str]] = frozenset({"message", "screenshot", "refresh_inventory"})

Hex64 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Nonce = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
UserName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f/]+$")]
_Text = Annotated[str, msgspec.Meta(max_length=4000)]
_Short = Annotated[str, msgspec.Meta(max_length=200)]
_Micros = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Arg = Annotated[str, msgspec.Meta(max_length=1000)]
# A Debian package name, optionally with an architecture qualifier (libc6:amd64).
DebName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?$"),
]


class _Params(msgspec.Struct, tag_field="action", forbid_unknown_fields=True, kw_only=True):
    """Base of each action's parameters; the tag is the action's name."""


class MessageParams(_Params, tag="message"):
    """Show a message to the people using the PC (every graphical session)."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    title: _Short = ""


class ScreenshotParams(_Params, tag="screenshot"):
    """Take a screenshot now (0 = every monitor), sent as a ``screen.frame`` event."""

    monitor: Annotated[int, msgspec.Meta(ge=0, le=32)] = 0


class RefreshInventoryParams(_Params, tag="refresh_inventory"):
    """Send the hardware and software inventory now."""


class LockParams(_Params, tag="lock"):
    """Lock the screen of the graphical sessions (of ``user``, or all when empty)."""

    user: Annotated[str, msgspec.Meta(max_length=64)] = ""


class LogoffParams(_Params, tag="logoff"):
    """End every session of ``user`` (their processes are terminated)."""

    user: UserName


class RestartParams(_Params, tag="restart"):
    delay_seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 60
    message: _Text = ""


class ShutdownParams(_Params, tag="shutdown"):
    delay_seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 60
    message: _Text = ""


class KillProcessParams(_Params, tag="kill_process"):
    """Kill process ``pid`` — only if it still is the process the operator saw:
    its name matches and, when given, its start time (guards against PID reuse)."""

    pid: Annotated[int, msgspec.Meta(ge=2, le=2**31 - 1)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    start_time_us: _Micros = 0
    signal: Literal["TERM", "KILL"] = "TERM"


class CollectFileParams(_Params, tag="collect_file"):
    """Send one file's bytes to the server (the agent's local policy decides which
    paths may be read and caps the size)."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^/")]
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=1024 * 1024 * 1024)] = 16 * 1024 * 1024


class RunScriptParams(_Params, tag="run_script"):
    """Run a script from the server's library, identified by the SHA-256 of its bytes
    (the bytes travel beside the command and must match)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    sha256: Hex64
    interpreter: Literal["sh", "bash", "python3"] = "sh"
    args: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=1000)]], msgspec.Meta(max_length=32)
    ] = msgspec.field(default_factory=list)
    timeout_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 300
    run_as: Annotated[str, msgspec.Meta(max_length=64)] = ""


class InstallPackageParams(_Params, tag="install_package"):
    """Install a package file (a ``.deb`` on Linux) identified by its SHA-256."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^/\x00]+$")]
    sha256: Hex64


class RemovePackageParams(_Params, tag="remove_package"):
    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?$"
        ),
    ]
    purge: bool = False


class RemoteControlParams(_Params, tag="remote_control"):
    """Keyboard and mouse over the live view, with the person's consent and the
    indicator shown, for at most ``max_seconds``."""

    max_seconds: Annotated[int, msgspec.Meta(ge=60, le=14400)] = 1800


ActionParams = (
    MessageParams
    | ScreenshotParams
    | RefreshInventoryParams
    | LockParams
    | LogoffParams
    | RestartParams
    | ShutdownParams
    | KillProcessParams
    | CollectFileParams
    | RunScriptParams
    | InstallPackageParams
    | RemovePackageParams
    | RemoteControlParams
)


class CommandBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What operators sign. ``nonce`` is the command's id: random, never reused; the
    agent remembers every nonce it accepted (across restarts) until it expires."""

    format: Literal["sekimori-action/1"] = COMMAND_FORMAT
    deployment: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    nonce: Nonce
    params: ActionParams
    devices_root: Hex64
    device_count: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    issued_at_us: _Micros
    expires_at_us: _Micros
    requested_by: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""

    @property
    def action(self) -> ActionName:
        return type(self.params).__struct_config__.tag  # type: ignore[return-value]


class Signature(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One operator's signature over a digest (a command's or a keyring's).

    ``ed25519``: ``signature`` is the raw 64-byte Ed25519 signature of the digest, made
    by an operator key (``sekimori sign``). ``webauthn``: a passkey assertion whose
    ``clientDataJSON.challenge`` is the digest (base64url); ``signature`` is the
    authenticator's signature over ``authenticator_data || SHA-256(client_data_json)``.
    """

    key_id: Hex64
    kind: Literal["ed25519", "webauthn"]
    signature: Annotated[bytes, msgspec.Meta(min_length=1, max_length=1024)]
    authenticator_data: Annotated[bytes, msgspec.Meta(max_length=1024)] = b""
    client_data_json: Annotated[bytes, msgspec.Meta(max_length=4096)] = b""


class SignedCommand(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    body: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_COMMAND_BODY_BYTES)]
    signatures: Annotated[list[Signature], msgspec.Meta(max_length=8)] = msgspec.field(
        default_factory=list
    )


class ProofStep(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """One step of a Merkle path: the sibling hash and whether it sits on the left."""

    left: bool
    sibling: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


_encoder = msgspec.msgpack.Encoder()
_body_decoder = msgspec.msgpack.Decoder(CommandBody)
_signed_decoder = msgspec.msgpack.Decoder(SignedCommand)
_COMMAND_DOMAIN: Final = b"sekimori/action/v1\n"


def encode_command_body(body: CommandBody) -> bytes:
    return _encoder.encode(body)


def decode_command_body(data: bytes) -> CommandBody:
    """Strict decode; raises ``ValueError`` naming the field."""
    if len(data) > MAX_COMMAND_BODY_BYTES:
        raise ValueError(f"command body of {len(data)} bytes exceeds {MAX_COMMAND_BODY_BYTES}")
    try:
        body = _body_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid command body: {exc}") from None
    if body.expires_at_us <= body.issued_at_us:
        raise ValueError("invalid command body: expires before it is issued")
    return body


def encode_signed_command(command: SignedCommand) -> bytes:
    return _encoder.encode(command)


def decode_signed_command(data: bytes) -> SignedCommand:
    try:
        return _signed_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid signed command: {exc}") from None


def command_digest(body: bytes) -> bytes:
    """The 32 bytes operators sign: SHA-256 over a domain tag and the body's bytes."""
    return hashlib.sha256(_COMMAND_DOMAIN + body).digest()


# ---- device binding: a Merkle tree of device ids ------------------------------------


def device_leaf(device_id: str) -> bytes:
    return hashlib.sha256(b"\x00" + device_id.encode()).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(device_ids: Iterable[str]) -> list[list[bytes]]:
    leaves = sorted({device_leaf(d) for d in device_ids})
    if not leaves:
        raise ValueError("a command targets at least one device")
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [
            _node(below[i], below[i + 1]) if i + 1 < len(below) else below[i]
            for i in range(0, len(below), 2)
        ]
        levels.append(above)
    return levels


def merkle_root(device_ids: Iterable[str]) -> str:
    """Hex root over the (deduplicated) device ids; order does not matter."""
    return _levels(device_ids)[-1][0].hex()


def merkle_proof(device_ids: Sequence[str], device_id: str) -> list[ProofStep]:
    """The path from ``device_id``'s leaf to the root (an odd node out is carried up
    unchanged, so it has no step at that level)."""
    levels = _levels(device_ids)
    try:
        index = levels[0].index(device_leaf(device_id))
    except ValueError:
        raise ValueError(f"device {device_id} is not among the command's devices") from None
    proof: list[ProofStep] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(ProofStep(left=sibling < index, sibling=level[sibling]))
        index //= 2
    return proof


def verify_merkle_proof(device_id: str, proof: Sequence[ProofStep], root_hex: str) -> bool:
    node = device_leaf(device_id)
    for step in proof:
        node = _node(step.sibling, node) if step.left else _node(node, step.sibling)
    return node.hex() == root_hex
