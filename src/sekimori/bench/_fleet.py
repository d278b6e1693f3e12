"""The console benchmark's fleet: device groups and devices as a mid-sized Japanese
company would have them (sites × departments, one primary user per PC, mostly
current agents with some outdated ones, about 60 % online, 1 % revoked).

Generation is seeded: the same parameters give the same fleet.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from sekimori import __version__

__all__ = ["HOUR_US", "FleetDevice", "OsRelease", "make_devices", "make_groups"]

HOUR_US = 3_600_000_000
_DAY_US = 24 * HOUR_US

_SITES = (("tky", "東京本社"), ("osk", "大阪支社"), ("ngy", "名古屋支社"), ("fuk", "福岡営業所"))
_DEPARTMENTS = (
    ("eigyo", "営業部"),
    ("somu", "総務部"),
    ("jinji", "人事部"),
    ("keiri", "経理部"),
    ("kaihatsu", "開発部"),
    ("joho", "情報システム部"),
    ("hinsho", "品質保証部"),
    ("seizo", "製造部"),
    ("kikaku", "経営企画部"),
    ("houmu", "法務部"),
)
# Head office has every department; the branches mostly sales and admin.
_BRANCH_DEPARTMENTS = (0, 1, 3, 7)

_SURNAMES = [
    "sato",
    "suzuki",
    "takahashi",
    "tanaka",
    "ito",
    "watanabe",
    "yamamoto",
    "nakamura",
    "kobayashi",
    "kato",
    "yoshida",
    "yamada",
    "sasaki",
    "yamaguchi",
    "matsumoto",
    "inoue",
    "kimura",
    "hayashi",
    "saito",
    "shimizu",
    "yamazaki",
    "mori",
    "abe",
    "ikeda",
    "hashimoto",
    "yamashita",
    "ishikawa",
    "nakajima",
    "maeda",
    "fujita",
    "ogawa",
    "goto",
    "okada",
    "hasegawa",
    "murakami",
    "kondo",
    "ishii",
    "sakamoto",
    "endo",
    "aoki",
    "fujii",
    "nishimura",
    "fukuda",
    "ota",
    "miura",
    "fujiwara",
    "okamoto",
    "matsuda",
    "nakagawa",
    "nakano",
]
_GIVEN = [
    "hiroshi",
    "takashi",
    "akira",
    "yuki",
    "yoko",
    "keiko",
    "naoki",
    "kenji",
    "daisuke",
    "shota",
    "haruto",
    "yui",
    "aoi",
    "sakura",
    "mai",
    "ayaka",
    "tomoko",
    "makoto",
    "satoshi",
    "kazuya",
    "ryo",
    "sho",
    "misaki",
    "nana",
    "yuto",
    "emi",
    "kaori",
    "masato",
    "tsubasa",
    "rina",
]


@dataclass(frozen=True, slots=True)
class OsRelease:
    """An OS release as os-release(5) and the devices table describe it."""

    id: str
    name: str
    version_id: str
    version: str
    codename: str
    kernel: str
    manager: str  # dpkg / rpm

    @property
    def pretty_name(self) -> str:
        return f"{self.name} {self.version}"


_OS_RELEASES = (
    (OsRelease("ubuntu", "Ubuntu", "24.04", "24.04.1 LTS (Noble Numbat)", "noble",
               "6.8.0-49-generic", "dpkg"), 38),
    (OsRelease("ubuntu", "Ubuntu", "22.04", "22.04.5 LTS (Jammy Jellyfish)", "jammy",
               "5.15.0-126-generic", "dpkg"), 30),
    (OsRelease("debian", "Debian GNU/Linux", "12", "12 (bookworm)", "bookworm",
               "6.1.0-27-amd64", "dpkg"), 14),
    (OsRelease("rocky", "Rocky Linux", "9.4", "9.4 (Blue Onyx)", "blueonyx",
               "5.14.0-427.42.1.el9_4.x86_64", "rpm"), 10),
    (OsRelease("fedora", "Fedora Linux", "40", "40 (Workstation Edition)", "",
               "6.11.8-200.fc40.x86_64", "rpm"), 5),
    (OsRelease("ubuntu", "Ubuntu", "20.04", "20.04.6 LTS (Focal Fossa)", "focal",
               "5.4.0-200-generic", "dpkg"), 3),
)  # fmt: skip

# Most agents run the current release; the rest lag behind (the outdated agents the
# console must make stand out).
_AGENT_VERSIONS = ((__version__, 85), ("0.0.9", 9), ("0.0.8", 4), ("0.0.5", 2))


@dataclass(frozen=True, slots=True)
class FleetDevice:
    index: int
    id: str
    hostname: str
    group: int  # index into make_groups()
    os: OsRelease
    agent_version: str
    user: str  # the PC's primary OS user (uid 1000, as on most desktops)
    enrolled_us: int
    last_seen_us: int
    connected: bool
    revoked_us: int | None
    laptop: bool


def make_groups() -> list[str]:
    """The 20 device groups, "site/department"."""
    names = [f"{_SITES[0][1]}/{dept}" for _, dept in _DEPARTMENTS]
    for _, site in _SITES[1:]:
        names.extend(f"{site}/{_DEPARTMENTS[d][1]}" for d in _BRANCH_DEPARTMENTS)
    return names[:20]


def _group_codes() -> list[tuple[str, str]]:
    codes = [(_SITES[0][0], code) for code, _ in _DEPARTMENTS]
    for site, _ in _SITES[1:]:
        codes.extend((site, _DEPARTMENTS[d][0]) for d in _BRANCH_DEPARTMENTS)
    return codes[:20]


# Relative group sizes: sales and manufacturing are big, legal is small.
_GROUP_WEIGHTS = (18, 6, 3, 4, 14, 3, 5, 12, 2, 1, 8, 2, 2, 5, 6, 2, 2, 4, 4, 2)


def make_devices(count: int, *, now: int, window_start: int, seed: int) -> list[FleetDevice]:
    """``count`` devices. Every device was enrolled before ``window_start`` and last
    seen after it (so each has events in the window); connected devices were seen
    within the last 20 s, the others between an hour and the window's start ago;
    revoked ones (1 %) were revoked within the window."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not a secret
    codes = _group_codes()
    releases = [r for r, _ in _OS_RELEASES]
    release_weights = [w for _, w in _OS_RELEASES]
    versions = [v for v, _ in _AGENT_VERSIONS]
    version_weights = [w for _, w in _AGENT_VERSIONS]
    numbers = [0] * len(codes)
    used_users: set[str] = set()
    devices = []
    for index in range(count):
        group = rng.choices(range(len(codes)), _GROUP_WEIGHTS)[0]
        numbers[group] += 1
        site, dept = codes[group]
        laptop = rng.random() < 0.45
        hostname = f"{site}-{dept}-{'nb' if laptop else 'pc'}{numbers[group]:04d}"
        user = _user_name(rng, used_users)
        enrolled = window_start - rng.randrange(_DAY_US, 400 * _DAY_US)
        revoked_us: int | None = None
        roll = rng.random()
        if roll < 0.01:
            revoked_us = rng.randrange(window_start + 3 * _DAY_US, now - HOUR_US)
            last_seen = revoked_us - rng.randrange(60_000_000, 3 * _DAY_US)
            connected = False
        elif roll < 0.61:
            last_seen = now - rng.randrange(0, 20_000_000)
            connected = True
        else:
            # Offline: mostly since last night, some for days or weeks (holidays,
            # broken, in a drawer).
            back = rng.choice((HOUR_US, 16 * HOUR_US, 3 * _DAY_US, 20 * _DAY_US))
            last_seen = now - HOUR_US - rng.randrange(back)
            connected = False
        devices.append(
            FleetDevice(
                index=index,
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                hostname=hostname,
                group=group,
                os=rng.choices(releases, release_weights)[0],
                agent_version=rng.choices(versions, version_weights)[0],
                user=user,
                enrolled_us=enrolled,
                last_seen_us=max(last_seen, window_start + 2 * HOUR_US + 1),
                connected=connected,
                revoked_us=revoked_us,
                laptop=laptop,
            )
        )
    return devices


def _user_name(rng: random.Random, used: set[str]) -> str:
    """A login name in one of the usual corporate styles, unique in the fleet."""
    surname, given = rng.choice(_SURNAMES), rng.choice(_GIVEN)
    style = rng.randrange(3)
    base = (f"{surname}.{given}", f"{given[0]}.{surname}", f"{surname}-{given[0]}")[style]
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}{n}"
    used.add(name)
    return name
