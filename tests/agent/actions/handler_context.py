"""An ``ActionContext`` for calling one handler directly (the executor's checks are
tested with the executor), and a throwaway Debian package built with dpkg-deb."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from sekimori.agent.actions.base import ActionContext
from sekimori.protocol.actions import ActionParams, decode_command_body
from tests.operators import command


def context(
    params: ActionParams,
    state_dir: Path,
    *,
    attachment: bytes = b"",
    policy: object = None,
    devices: Sequence[str] = ("device-1",),
) -> ActionContext:
    state_dir.mkdir(mode=0o700, exist_ok=True)
    body = decode_command_body(command(params, devices).body)
    return ActionContext(
        body=body,
        signers=frozenset({"alice"}),
        state_dir=state_dir,
        attachment=attachment,
        policy=policy,
    )


# The one file the throwaway packages install.
PAYLOAD = Path("/usr/share/sekimori-a2-test-pkg/hello.txt")


def build_deb(root: Path, name: str, version: str = "1.0", arch: str = "all") -> bytes:
    """A minimal .deb named ``name`` installing ``PAYLOAD`` (built under ``root``)."""
    tree = root / f"{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: Sekimori tests <tests@example.invalid>\nPriority: optional\n"
        "Description: throwaway package of the Sekimori action tests\n"
    )
    target = tree / PAYLOAD.relative_to("/")
    target.parent.mkdir(parents=True)
    target.write_text(f"hello from {name} {version}\n")
    out = root / f"{name}_{version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()
