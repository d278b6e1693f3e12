"""The inventory events' package managers: the language ecosystems (pypi, npm) travel
like the system ones, and a name outside the list is refused at the boundary, in the
events and in the policy alike."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekimori.protocol import InvalidMessage
from sekimori.protocol.codec import decode_payload
from sekimori.protocol.events.inventory import (
    Manager,
    Package,
    SoftwareDowngraded,
    SoftwareInstalled,
    SoftwareSnapshot,
)
from sekimori.protocol.policy import InventoryPolicy, Policy

MANAGERS: tuple[Manager, ...] = get_args(Manager)


def test_the_managers() -> None:
    assert MANAGERS == ("dpkg", "rpm", "snap", "flatpak", "pypi", "npm")


_names = st.text(min_size=1, max_size=40)
_packages = st.builds(
    Package,
    manager=st.sampled_from(MANAGERS),
    name=_names,
    version=_names,
    architecture=st.sampled_from(["", "amd64", "all", "x86_64"]),
    source=_names,
    source_version=_names,
)


@given(packages=st.lists(_packages, max_size=20), managers=st.lists(st.sampled_from(MANAGERS)))
def test_snapshots_round_trip_with_every_manager(
    packages: list[Package], managers: list[Manager]
) -> None:
    snapshot = SoftwareSnapshot(
        packages=packages, managers=managers, errors=["npm: skipped /x: package.json: bad"]
    )
    raw = msgspec.Raw(msgspec.msgpack.encode(snapshot))
    assert decode_payload("inventory.software", raw) == snapshot


def test_language_package_changes_decode() -> None:
    installed = SoftwareInstalled(
        manager="npm", name="@babel/core", architecture="", version="7.26.0",
        source="@babel/core", source_version="7.26.0",
    )  # fmt: skip
    down = SoftwareDowngraded(
        manager="pypi", name="requests", architecture="", from_version="2.32.0",
        to_version="2.31.0", source="requests", source_version="2.31.0",
    )  # fmt: skip
    for kind, payload in (
        ("inventory.software_installed", installed),
        ("inventory.software_downgraded", down),
    ):
        assert decode_payload(kind, msgspec.Raw(msgspec.msgpack.encode(payload))) == payload


@pytest.mark.parametrize("manager", ["pip", "PyPI", "npmjs", "", "gem"])
def test_an_unknown_manager_is_refused(manager: str) -> None:
    package = ["dpkg", "bash", "5.2", "amd64", "bash", "5.2"]
    bad = [manager, "requests", "2.31.0", "", "requests", "2.31.0"]
    raw = msgspec.msgpack.encode({"packages": [package, bad], "managers": [], "errors": []})
    with pytest.raises(InvalidMessage, match="Invalid enum value"):
        decode_payload("inventory.software", msgspec.Raw(raw))
    change = {
        "manager": manager, "name": "x", "architecture": "", "version": "1",
        "source": "x", "source_version": "1",
    }  # fmt: skip
    with pytest.raises(InvalidMessage, match="Invalid enum value"):
        decode_payload("inventory.software_installed", msgspec.Raw(msgspec.msgpack.encode(change)))


def test_a_policy_can_choose_the_language_ecosystems() -> None:
    section = msgspec.convert({"managers": ["dpkg", "pypi", "npm"]}, InventoryPolicy)
    assert section.managers == ["dpkg", "pypi", "npm"]
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value 'pip'"):
        msgspec.convert({"collectors": {"inventory": {"managers": ["pip"]}}}, Policy)
