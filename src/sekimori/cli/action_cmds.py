"""Signed remote actions from the command line (docs/actions.md).

``sekimori operator keygen`` and ``sekimori sign`` work offline (``operator_keys``);
``sekimori operators …``, ``sekimori action …`` and ``sekimori library …`` act on the
server's store like the other admin commands, through ``sekimori.server.actions``
(every change audited, as ``cli:<user>``). Only the parser is built at start-up: the
handlers import the server code when they run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["register", "register_bench"]

Add = Callable[..., argparse.ArgumentParser]


@contextmanager
def _store(args: argparse.Namespace, *, init: bool = False) -> Iterator[sa.Engine]:
    from sekimori.cli.common import settings_from_args
    from sekimori.server.bootstrap import initialize, open_store

    settings = settings_from_args(args, component="cli")
    if init:
        from sekimori.cli.server_cmds import announce

        result = initialize(settings)
        if result.admin_password:
            announce(result)  # a fresh data directory: show the first password once
        engine = result.engine
    else:
        engine = open_store(settings)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _errors() -> Iterator[None]:
    from sekimori.cli.common import CommandError
    from sekimori.server.actions import ActionError

    try:
        yield
    except ActionError as exc:
        raise CommandError(exc.message) from None


def _actor() -> str:
    from sekimori.cli.common import cli_actor

    return cli_actor()


# ---- operators ---------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import keygen

    return keygen(args)


def _sign(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import sign_file

    return sign_file(args)


def _operators_init(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import load_public_key
    from sekimori.server.actions import init_keyring

    keys = [load_public_key(path) for path in args.key]
    with _store(args, init=True) as engine, _errors():
        fingerprint = init_keyring(
            engine,
            keys,
            args.quorum,
            args.fleet_threshold,
            _actor(),
            max_command_seconds=args.max_command_seconds,
        )
    print(f"Operator keyring version 1 published with {len(keys)} key(s).")
    print(f"Fingerprint: SHA256:{fingerprint}")
    print("Enroll PCs with:  sekimori agent enroll ... --operators SHA256:" + fingerprint)
    return 0


def _operators_show(args: argparse.Namespace) -> int:
    from sekimori.clock import format_us
    from sekimori.protocol.signing import decode_keyring, keyring_fingerprint
    from sekimori.server.actions import keyring_chain, list_proposals

    with _store(args) as engine:
        chain = keyring_chain(engine)
        proposals = list_proposals(engine)
    if not chain:
        print("No operator keyring yet: run `sekimori operators init`.")
        return 0
    if args.out:
        from sekimori.protocol.signing import encode_signed_keyring

        Path(args.out).write_bytes(encode_signed_keyring(chain[-1]))
        print(f"The current keyring is in {args.out} (for `sekimori agent trust-operators`).")
    for signed in chain:
        k = decode_keyring(signed.body)
        print(
            f"version {k.version}  SHA256:{keyring_fingerprint(signed.body)}  quorum {k.quorum}"
            f"  fleet threshold {k.fleet_threshold}  max {k.max_command_seconds} s"
            f"  {format_us(k.created_at_us)}  signatures {len(signed.signatures)}"
        )
    print("current keys:")
    for key in decode_keyring(chain[-1].body).keys:
        print(f"  {key.key_id}  {key.operator}  {key.kind}  {key.label}")
    for p in proposals:
        print(
            f"proposal {p.id}: version {p.version}, signed by {', '.join(sorted(p.signers)) or '-'}"
            f" ({len(p.signers)}/{p.needed}), by {p.created_by}"
        )
    return 0


def _operators_propose(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import load_public_key
    from sekimori.server.actions import proposal_view, propose_keyring

    add = [load_public_key(path) for path in args.add]
    with _store(args) as engine, _errors():
        proposal = propose_keyring(
            engine,
            add=add,
            remove=args.remove,
            quorum=args.quorum,
            fleet_threshold=args.fleet_threshold,
            max_command_seconds=args.max_command_seconds,
            by=_actor(),
        )
        view = proposal_view(engine, proposal)
    print(f"Proposal {proposal}: keyring version {view.version}, needs {view.needed} operator(s).")
    print(f"Sign it: sekimori operators sign {proposal} --key FILE")
    return 0


def _operators_sign(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import describe_request, load_private_key
    from sekimori.protocol.signing import sign_ed25519
    from sekimori.server.actions import add_proposal_signature, proposal_view

    key = load_private_key(args.key, args.passphrase_file)
    with _store(args) as engine, _errors():
        view = proposal_view(engine, args.proposal)
        text, digest = describe_request(view.body)
        print("Signing:\n" + text, file=sys.stderr)
        done = add_proposal_signature(engine, args.proposal, sign_ed25519(key, digest), _actor())
    _print_proposal(done.id, done.state, len(done.signers), done.needed)
    return 0


def _print_proposal(proposal: int, state: str, signers: int, needed: int) -> None:
    if state == "published":
        print(f"Proposal {proposal} published: agents receive it within seconds.")
    else:
        print(f"Proposal {proposal}: {signers}/{needed} operator(s) signed.")


def _operators_export(args: argparse.Namespace) -> int:
    from sekimori.server.actions import proposal_view

    with _store(args) as engine, _errors():
        body = proposal_view(engine, args.proposal).body
    _write_out(args.out, body)
    return 0


def _operators_attach(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import read_signature
    from sekimori.server.actions import add_proposal_signature

    signature = read_signature(args.signature)
    with _store(args) as engine, _errors():
        done = add_proposal_signature(engine, args.proposal, signature, _actor())
    _print_proposal(done.id, done.state, len(done.signers), done.needed)
    return 0


def _operators_withdraw(args: argparse.Namespace) -> int:
    from sekimori.server.actions import withdraw_proposal

    with _store(args) as engine, _errors():
        withdraw_proposal(engine, args.proposal, _actor())
    print(f"Proposal {args.proposal} withdrawn.")
    return 0


def _write_out(out: str | None, data: bytes) -> None:
    if out:
        Path(out).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


# ---- actions -----------------------------------------------------------------------


def _params(action: str, pairs: list[str], engine: sa.Engine) -> Any:
    import msgspec

    from sekimori.cli.common import CommandError
    from sekimori.protocol.actions import ACTION_NAMES, ActionParams
    from sekimori.server.actions import list_library

    if action not in ACTION_NAMES:
        raise CommandError(f"unknown action {action!r}: one of {', '.join(ACTION_NAMES)}")
    values: dict[str, Any] = {"action": action}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--param {pair!r}: use NAME=VALUE")
        values[name] = json.loads(value) if value.startswith("[") else value
    if action in ("run_script", "install_package") and "sha256" not in values:
        # Name a library item by its name instead of its digest.
        kind = "script" if action == "run_script" else "package"
        found = [i for i in list_library(engine, kind) if i.name == values.get("name")]
        if len(found) != 1:
            raise CommandError(f"--param name=NAME must name one {kind} of the library")
        values["sha256"] = found[0].sha256
        if kind == "package":
            values.setdefault("filename", found[0].filename)
        else:
            values.setdefault("interpreter", found[0].interpreter)
    try:
        return msgspec.convert(values, ActionParams, strict=False)
    except msgspec.ValidationError as exc:
        raise CommandError(f"invalid parameters for {action}: {exc}") from None


def _devices(engine: sa.Engine, ids: list[str], group: str | None) -> list[str]:
    from sekimori.cli.common import CommandError
    from sekimori.server.store.devices import DeviceNotFound, list_devices, resolve_device_id

    if bool(ids) == bool(group):
        raise CommandError("give either --device ID ... or --group NAME")
    if group:
        found = [d.id for d in list_devices(engine) if d.group == group and d.revoked_us is None]
        if not found:
            raise CommandError(f"group {group!r} has no enrolled device")
        return found
    try:
        return [resolve_device_id(engine, text) for text in ids]
    except DeviceNotFound as exc:
        raise CommandError(str(exc)) from None


def _action_create(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import load_private_key
    from sekimori.protocol.signing import sign_ed25519
    from sekimori.server.actions import add_command_signature, command_view, create_command

    key = load_private_key(args.key, args.passphrase_file) if args.key else None
    with _store(args) as engine, _errors():
        params = _params(args.action, args.param, engine)
        devices = _devices(engine, args.device, args.group)
        nonce = create_command(
            engine,
            params,
            devices,
            requested_by=_actor(),
            reason=args.reason,
            lifetime_s=args.lifetime,
        )
        view = command_view(engine, nonce)
        state = view.state
        if key is not None and state == "awaiting_signatures":
            state = add_command_signature(engine, nonce, sign_ed25519(key, view.digest), _actor())
    if args.json:
        print(
            json.dumps(
                {
                    "nonce": nonce,
                    "state": state,
                    "digest": view.digest.hex(),
                    "device_count": view.device_count,
                    "needed_signers": view.needed_signers,
                }
            )
        )
    else:
        print(f"Command {nonce}: {view.action} on {view.device_count} device(s), {state}.")
        if state == "awaiting_signatures":
            print(f"Needs {view.needed_signers} operator(s): sekimori action sign {nonce} --key F")
    return 0


def _action_sign(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import describe_request, load_private_key
    from sekimori.protocol.signing import sign_ed25519
    from sekimori.server.actions import add_command_signature, command_view

    key = load_private_key(args.key, args.passphrase_file)
    with _store(args) as engine, _errors():
        view = command_view(engine, args.nonce)
        text, digest = describe_request(view.body_bytes)
        print("Signing:\n" + text, file=sys.stderr)
        state = add_command_signature(engine, args.nonce, sign_ed25519(key, digest), _actor())
    print(f"Command {args.nonce}: {state}.")
    return 0


def _action_export(args: argparse.Namespace) -> int:
    from sekimori.server.actions import command_view

    with _store(args) as engine, _errors():
        body = command_view(engine, args.nonce).body_bytes
    _write_out(args.out, body)
    return 0


def _action_attach(args: argparse.Namespace) -> int:
    from sekimori.cli.operator_keys import read_signature
    from sekimori.server.actions import add_command_signature

    signature = read_signature(args.signature)
    with _store(args) as engine, _errors():
        state = add_command_signature(engine, args.nonce, signature, _actor())
    print(f"Command {args.nonce}: {state}.")
    return 0


def _action_status(args: argparse.Namespace) -> int:
    from sekimori.clock import format_us
    from sekimori.server.actions import command_view, target_results

    with _store(args) as engine, _errors():
        view = command_view(engine, args.nonce)
        targets = target_results(engine, args.nonce)
    if args.json:
        rows = [
            {
                "device_id": t.device_id,
                "state": t.state,
                "reason": t.reason,
                "exit_code": t.exit_code,
                "output": t.output,
                "data_sha256": t.data_sha256,
                "data_size": t.data_size,
            }
            for t in targets
        ]
        print(json.dumps({"nonce": view.nonce, "state": view.state, "targets": rows}))
        return 0
    print(
        f"{view.nonce}  {view.action}  {view.state}  signed by {', '.join(view.signers) or '-'} "
        f"({len(view.signers)}/{view.needed_signers})  expires {format_us(view.expires_at_us)}"
    )
    for t in targets:
        detail = t.reason or (t.output[:60].replace("\n", " ") if t.output else "")
        code = "" if t.exit_code is None else f" exit {t.exit_code}"
        print(f"  {t.device_id}  {t.state}{code}  {detail}")
    return 0


def _action_list(args: argparse.Namespace) -> int:
    from sekimori.clock import format_us
    from sekimori.server.actions import list_commands

    with _store(args) as engine:
        views = list_commands(engine, limit=args.limit)
    for v in views:
        print(
            f"{v.nonce}  {format_us(v.created_at_us)}  {v.action:<17} {v.state:<20} "
            f"{v.device_count:>6} device(s)  by {v.requested_by}"
        )
    return 0


# ---- library -----------------------------------------------------------------------


def _library_add(args: argparse.Namespace) -> int:
    from sekimori.cli.common import CommandError
    from sekimori.server.actions import add_library_item

    path = Path(args.file)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None
    with _store(args) as engine, _errors():
        digest = add_library_item(
            engine,
            args.kind,
            name=args.name or path.stem,
            filename=path.name,
            content=content,
            interpreter=args.interpreter,
            by=_actor(),
        )
    print(f"{args.kind} {args.name or path.stem}: sha256 {digest}")
    return 0


def _library_list(args: argparse.Namespace) -> int:
    from sekimori.server.actions import list_library

    with _store(args) as engine:
        for item in list_library(engine):
            print(
                f"{item.sha256}  {item.kind:<7} {item.name}  {item.filename}  {item.size} bytes"
                + (f"  ({item.interpreter})" if item.interpreter else "")
            )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from sekimori.bench import actions

    return actions.main(args)


# ---- parser ------------------------------------------------------------------------


def register_bench(
    bench_sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add
) -> None:
    """``sekimori bench actions``."""
    bench = add(
        bench_sub,
        "actions",
        _bench,
        "Signed remote actions with 1,000 connected agents: latency from the console "
        "click to the agent's receipt and to the result stored (p50/p95/p99), beside a "
        "WebSocket ping on the same connections.",
    )
    bench.add_argument("--agents", type=int, default=1000)
    bench.add_argument("--clicks", type=int, default=200, help="single-device commands")
    bench.add_argument("--fleet-rounds", type=int, default=5, help="commands to every agent")
    bench.add_argument("--database-url", help="store (default: SQLite)")
    bench.add_argument(
        "--verify-first",
        action="store_true",
        help="agents verify each command before answering (default: answer at once and "
        "verify after; one process verifying for 1,000 PCs delays the later ones)",
    )


def _key_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--key", required=required, help="operator private key file (PEM)")
    parser.add_argument("--passphrase-file", help="file holding the key's passphrase")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], add: Add) -> None:
    """Add ``operator``, ``operators``, ``sign``, ``action`` and ``library``."""
    operator = sub.add_parser("operator", help="Operator keys.", description="Operator keys.")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True, metavar="ACT")
    keygen = add(
        operator_sub,
        "keygen",
        _keygen,
        "Make an Ed25519 operator key (PKCS#8 PEM, mode 0600) and its public key file "
        "(<out>.pub.pem). Offline: the private key never goes to the server.",
    )
    keygen.add_argument("--out", required=True, help="private key file to create")
    keygen.add_argument("--name", required=True, help="operator name (console user name)")
    keygen.add_argument("--passphrase-file", help="encrypt the key with this file's passphrase")

    operators = sub.add_parser(
        "operators", help="The operator keyring.", description="The operator keyring."
    )
    ops = operators.add_subparsers(dest="operators_command", required=True, metavar="ACTION")
    init = add(
        ops,
        "init",
        _operators_init,
        "Publish keyring version 1 from operator public keys and print its fingerprint "
        "(what `sekimori agent enroll --operators` pins).",
    )
    init.add_argument("--key", action="append", required=True, help="public key file (repeat)")
    init.add_argument("--quorum", type=int, default=1, help="operators a keyring change needs")
    init.add_argument(
        "--fleet-threshold",
        type=int,
        default=10,
        help="commands for more devices need two operators (default 10)",
    )
    init.add_argument("--max-command-seconds", type=int, default=3600)
    show = add(ops, "show", _operators_show, "Keyring versions, fingerprints, keys and proposals.")
    show.add_argument(
        "--out", help="also write the current signed keyring to this file (trust-operators)"
    )
    propose = add(
        ops,
        "propose",
        _operators_propose,
        "Propose the next keyring version; published once a quorum of the current "
        "operators signed it.",
    )
    propose.add_argument("--add", action="append", default=[], help="public key file to add")
    propose.add_argument("--remove", action="append", default=[], help="key id to remove")
    propose.add_argument("--quorum", type=int)
    propose.add_argument("--fleet-threshold", type=int)
    propose.add_argument("--max-command-seconds", type=int)
    sign_p = add(ops, "sign", _operators_sign, "Sign a keyring proposal with a key file.")
    sign_p.add_argument("proposal", type=int)
    _key_options(sign_p)
    export_p = add(
        ops, "export", _operators_export, "Write a proposal's keyring for `sekimori sign`."
    )
    export_p.add_argument("proposal", type=int)
    export_p.add_argument("--out", help="file (default: standard output)")
    withdraw_p = add(
        ops, "withdraw", _operators_withdraw, "Withdraw an open proposal (it takes no signature)."
    )
    withdraw_p.add_argument("proposal", type=int)
    attach_p = add(ops, "attach", _operators_attach, "Add a signature made by `sekimori sign`.")
    attach_p.add_argument("proposal", type=int)
    attach_p.add_argument("signature", help="signature file")

    sign = add(
        sub,
        "sign",
        _sign,
        "Offline: show what an exported request (a command or a keyring) approves, in "
        "words, and write the signature (to --out or standard output).",
    )
    sign.add_argument("file", help="request written by `action export` / `operators export`")
    sign.add_argument("--out", help="signature file (default: standard output)")
    _key_options(sign)

    action = sub.add_parser("action", help="Remote actions.", description="Remote actions.")
    act = action.add_subparsers(dest="action_command", required=True, metavar="ACTION")
    create = add(
        act,
        "create",
        _action_create,
        "Create a command for devices (or a group); with --key, sign it at once.",
    )
    create.add_argument("action", help="message, lock, restart, run_script, ...")
    create.add_argument("--device", action="append", default=[], help="device id (repeat)")
    create.add_argument("--group", help="every enrolled device of this group")
    create.add_argument("--param", action="append", default=[], help="NAME=VALUE (repeat)")
    create.add_argument("--reason", default="", help="why (shown to operators and logged)")
    create.add_argument("--lifetime", type=int, help="seconds (default 600)")
    create.add_argument("--json", action="store_true")
    _key_options(create, required=False)
    asign = add(act, "sign", _action_sign, "Sign a command with an operator key file.")
    asign.add_argument("nonce")
    _key_options(asign)
    aexport = add(act, "export", _action_export, "Write a command's body for `sekimori sign`.")
    aexport.add_argument("nonce")
    aexport.add_argument("--out", help="file (default: standard output)")
    aattach = add(act, "attach", _action_attach, "Add a signature made by `sekimori sign`.")
    aattach.add_argument("nonce")
    aattach.add_argument("signature", help="signature file")
    status = add(act, "status", _action_status, "A command's state and per-device results.")
    status.add_argument("nonce")
    status.add_argument("--json", action="store_true")
    alist = add(act, "list", _action_list, "Recent commands, newest first.")
    alist.add_argument("--limit", type=int, default=50)

    library = sub.add_parser(
        "library", help="Scripts and packages.", description="Scripts and packages."
    )
    lib = library.add_subparsers(dest="library_command", required=True, metavar="ACTION")
    ladd = add(lib, "add", _library_add, "Add a script or a .deb package to the library.")
    ladd.add_argument("file")
    ladd.add_argument("--kind", choices=("script", "package"), required=True)
    ladd.add_argument("--name", help="name (default: the file name without extension)")
    ladd.add_argument("--interpreter", choices=("sh", "bash", "python3"), default="sh")
    add(lib, "list", _library_list, "The library's scripts and packages.")
