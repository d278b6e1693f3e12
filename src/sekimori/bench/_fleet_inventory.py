"""Inventory payloads for the console benchmark's PCs: one ``inventory.hardware`` per
PC (its own hostname, serials and addresses) and one ``inventory.software`` list per
PC, drawn from a few pre-encoded package lists per package manager (a fleet
installed from a handful of images)."""

from __future__ import annotations

import random

import msgspec

from sekimori.bench._fleet import FleetDevice, OsRelease
from sekimori.protocol.events.inventory import (
    Cpu,
    Disk,
    Dmi,
    Hardware,
    Kernel,
    Manager,
    NetworkInterface,
    OperatingSystem,
    Package,
    Partition,
    SoftwareSnapshot,
)

__all__ = ["SoftwareLists", "hardware_json"]

_json = msgspec.json.Encoder()
_GIB = 1 << 30

_CPUS = (
    ("Intel(R) Core(TM) i5-1235U", "GenuineIntel", 10, 12, 4400),
    ("Intel(R) Core(TM) i7-1365U", "GenuineIntel", 10, 12, 5200),
    ("Intel(R) Core(TM) i5-12500", "GenuineIntel", 6, 12, 4600),
    ("13th Gen Intel(R) Core(TM) i7-13700", "GenuineIntel", 16, 24, 5200),
    ("AMD Ryzen 5 PRO 5650U with Radeon Graphics", "AuthenticAMD", 6, 12, 4200),
    ("AMD Ryzen 7 PRO 7730U with Radeon Graphics", "AuthenticAMD", 8, 16, 4500),
)
# (vendor, desktop model, laptop model, BIOS vendor)
_MAKERS = (
    ("Dell Inc.", "OptiPlex 7010", "Latitude 5440", "Dell Inc."),
    ("LENOVO", "ThinkCentre M70q Gen 4", "ThinkPad X1 Carbon Gen 11", "LENOVO"),
    ("HP", "HP ProDesk 400 G9", "HP EliteBook 840 G10", "HP"),
    ("FUJITSU CLIENT COMPUTING LIMITED", "ESPRIMO D7012/M", "LIFEBOOK U9313/M", "FUJITSU"),
    ("NEC", "Mate MKM44/L-F", "VersaPro VKT44/B-F", "NEC"),
    ("Panasonic Corporation", "CF-QV1", "CF-SV2", "Phoenix Technologies Ltd."),
)


def hardware_json(device: FleetDevice, rng: random.Random) -> str:
    """The PC's ``inventory.hardware`` payload as ingest stores it."""
    model, vendor, cores, threads, mhz = rng.choice(_CPUS)
    maker, desktop, laptop, bios = rng.choice(_MAKERS)
    serial = f"{rng.getrandbits(40):010X}"
    mac = ":".join(f"{b:02x}" for b in (0x3C, 0x52, 0x82, *rng.randbytes(3)))
    disk_bytes = rng.choice((256, 512, 1024)) * 1_000_000_000
    interfaces = [
        NetworkInterface(
            name="wlp0s20f3" if device.laptop else "enp0s31f6",
            mac=mac,
            addresses=[
                f"10.{20 + device.group}.{device.index // 250 % 256}.{device.index % 250 + 2}/16",
                f"fe80::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}/64",
            ],
            up=True,
            mtu=1500,
            speed_mbps=866 if device.laptop else 1000,
            physical=True,
        )
    ]
    payload = Hardware(
        hostname=device.hostname,
        cpu=Cpu(
            model=model,
            vendor=vendor,
            architecture="x86_64",
            sockets=1,
            cores=cores,
            threads=threads,
            max_mhz=mhz,
        ),
        memory_bytes=rng.choice((8, 16, 16, 32)) * _GIB,
        swap_bytes=2 * _GIB,
        disks=[
            Disk(
                name="nvme0n1",
                model=rng.choice(("KXG80ZNV512G KIOXIA", "Samsung SSD 980 PRO", "WD PC SN740")),
                vendor="",
                serial=f"{rng.getrandbits(48):012X}",
                size_bytes=disk_bytes,
                removable=False,
                rotational=False,
                partitions=[
                    Partition(name="nvme0n1p1", size_bytes=1_073_741_824),
                    Partition(name="nvme0n1p2", size_bytes=disk_bytes - 1_073_741_824),
                ],
            )
        ],
        interfaces=interfaces,
        dmi=Dmi(
            system_vendor=maker,
            product_name=laptop if device.laptop else desktop,
            product_serial=serial,
            product_uuid=device.id,
            board_vendor=maker,
            chassis_type="10" if device.laptop else "3",
            bios_vendor=bios,
            bios_version=f"1.{rng.randrange(5, 30)}.0",
            bios_date=f"{rng.randrange(1, 13):02d}/{rng.randrange(1, 28):02d}/2024",
        ),
        os=_os(device.os),
        kernel=Kernel(name="Linux", release=device.os.kernel, version="#1 SMP PREEMPT_DYNAMIC"),
        virtual_machine=False,
    )
    return _json.encode(payload).decode("utf-8")


def _os(release: OsRelease) -> OperatingSystem:
    return OperatingSystem(
        id=release.id,
        name=release.name,
        version_id=release.version_id,
        version=release.version,
        codename=release.codename,
        pretty_name=release.pretty_name,
    )


_APPLICATIONS = [
    "firefox",
    "thunderbird",
    "libreoffice-calc",
    "libreoffice-writer",
    "libreoffice-impress",
    "gimp",
    "inkscape",
    "vlc",
    "evince",
    "eog",
    "nautilus",
    "gnome-terminal",
    "gnome-shell",
    "gedit",
    "file-roller",
    "remmina",
    "openssh-client",
    "openssh-server",
    "git",
    "curl",
    "wget",
    "rsync",
    "zip",
    "unzip",
    "p7zip-full",
    "python3",
    "python3-pip",
    "python3-venv",
    "perl",
    "vim",
    "nano",
    "emacs-nox",
    "tmux",
    "htop",
    "jq",
    "sqlite3",
    "cups",
    "printer-driver-gutenprint",
    "sane-utils",
    "fcitx5-mozc",
    "ibus-mozc",
    "fonts-noto-cjk",
    "fonts-ipafont",
    "fonts-takao",
    "network-manager",
    "openvpn",
    "wireguard-tools",
    "ufw",
    "apparmor",
    "systemd",
    "udev",
    "dbus",
    "polkitd",
    "sudo",
    "bash",
    "coreutils",
    "util-linux",
    "findutils",
    "grep",
    "sed",
    "tar",
    "gzip",
    "xz-utils",
    "bzip2",
    "zstd",
    "ca-certificates",
    "openssl",
    "gnupg",
    "apt",
    "dpkg",
    "tzdata",
    "locales",
    "fwupd",
    "unattended-upgrades",
    "snapd",
    "flatpak",
    "docker-ce",
    "containerd.io",
    "code",
    "google-chrome-stable",
    "microsoft-edge-stable",
    "slack-desktop",
    "teams-for-linux",
    "zoom",
]
_LIBRARIES = [
    "ssl3",
    "curl4",
    "xml2",
    "png16-16",
    "jpeg-turbo8",
    "gtk-3-0",
    "glib2.0-0",
    "pango-1.0-0",
    "cairo2",
    "freetype6",
    "fontconfig1",
    "harfbuzz0b",
    "sqlite3-0",
    "z1g",
    "bz2-1.0",
    "lzma5",
    "zstd1",
    "systemd0",
    "udev1",
    "dbus-1-3",
    "pulse0",
    "asound2",
    "gl1",
    "egl1",
    "vulkan1",
    "drm2",
    "x11-6",
    "xext6",
    "xrender1",
    "xcb1",
    "wayland-client0",
    "icu74",
    "nss3",
    "nspr4",
    "gnutls30",
    "krb5-3",
    "ldap-2.5-0",
    "sasl2-2",
    "pcre2-8-0",
    "ffi8",
    "readline8",
    "ncursesw6",
    "tinfo6",
    "uuid1",
    "blkid1",
    "mount1",
    "selinux1",
    "apparmor1",
    "cap2",
    "seccomp2",
    "acl1",
    "attr1",
    "gcrypt20",
    "gpg-error0",
    "p11-kit0",
    "tasn1-6",
    "idn2-0",
    "unistring5",
    "psl5",
    "nghttp2-14",
    "ssh-4",
    "brotli1",
    "webp7",
    "tiff6",
    "lcms2-2",
    "openjp2-7",
    "gdk-pixbuf-2.0-0",
    "rsvg2-2",
    "poppler134",
    "cups2",
    "sane1",
    "gphoto2-6",
    "usb-1.0-0",
    "hidapi-hidraw0",
    "bluetooth3",
    "nm0",
    "secret-1-0",
    "soup-3.0-0",
    "json-glib-1.0-0",
    "gstreamer1.0-0",
    "avcodec60",
    "avformat60",
    "swscale7",
    "opus0",
    "vorbis0a",
    "flac12",
    "mp3lame0",
    "x264-164",
    "x265-199",
    "vpx9",
    "dav1d7",
    "aom3",
    "python3.12",
    "perl5.38",
    "gcc-s1",
    "stdc++6",
    "c6",
    "boost-system1.83.0",
    "protobuf32",
    "re2-10",
    "snappy1v5",
    "lz4-1",
    "yaml-0-2",
    "xslt1.1",
    "enchant-2-2",
    "hunspell-1.7-0",
    "mozc-utils-gui",
    "ibus-1.0-5",
    "fcitx5core",
    "anthy1",
]


class SoftwareLists:
    """A few package lists per manager, each encoded once as ``inventory.software``."""

    def __init__(self, rng: random.Random, per_manager: int = 6) -> None:
        self._lists: dict[str, list[str]] = {
            manager: [self._encode(rng, manager) for _ in range(per_manager)]
            for manager in ("dpkg", "rpm")
        }

    def for_device(self, device: FleetDevice, rng: random.Random) -> str:
        return rng.choice(self._lists[device.os.manager])

    @staticmethod
    def _encode(rng: random.Random, manager: Manager) -> str:
        packages = []
        arch = "amd64" if manager == "dpkg" else "x86_64"
        names = list(_APPLICATIONS) + [f"lib{name}" for name in _LIBRARIES]
        names += [f"lib{name}-dev" for name in rng.sample(_LIBRARIES, 40)]
        names += [f"fonts-{n}" for n in ("dejavu", "liberation", "noto-color-emoji", "vlgothic")]
        for name in sorted(rng.sample(names, int(len(names) * rng.uniform(0.8, 1.0)))):
            major, minor, patch = rng.randrange(0, 12), rng.randrange(0, 40), rng.randrange(0, 9)
            version = (
                f"{major}.{minor}.{patch}-{rng.randrange(1, 6)}ubuntu{rng.randrange(1, 4)}"
                if manager == "dpkg"
                else f"{major}.{minor}.{patch}-{rng.randrange(1, 20)}.el9"
            )
            source = name.removesuffix("-dev")
            packages.append(Package(manager, name, version, arch, source, version))
        packages.append(Package("snap", "core22", "20241119", arch, "core22", "20241119"))
        packages.append(
            Package("flatpak", "org.gimp.GIMP", "2.10.38", arch, "org.gimp.GIMP", "2.10.38")
        )
        payload = SoftwareSnapshot(
            packages=packages, managers=[manager, "snap", "flatpak"], errors=[]
        )
        return _json.encode(payload).decode("utf-8")
