"""What the console benchmark's PCs do: pools of realistic payloads per event kind
(the sites an office visits, the applications it focuses, the programs it runs,
the files it touches, the USB devices it plugs in), built from the real payload
structs of sekimori.protocol.events and pre-encoded by :mod:`._fleet_templates`.

``KIND_WEIGHTS`` is the mix of an office day: mostly web, focus and process events,
some file operations, a trickle of USB, removable copies, logons and collector health.
"""

from __future__ import annotations

import random
from typing import Literal

from sekimori.bench._fleet_templates import (
    DURATION,
    START,
    TIME,
    USER,
    Variant,
    make_variant,
)
from sekimori.protocol.events import CollectorHealth, Payload
from sekimori.protocol.events.device import UsbAttached, UsbDetached
from sekimori.protocol.events.file import (
    FileCopiedToRemovable,
    FileCreated,
    FileDeleted,
    FileModified,
    FileMoved,
)
from sekimori.protocol.events.inventory import SoftwareUpgraded
from sekimori.protocol.events.process import ProcessStarted, ProcessStopped
from sekimori.protocol.events.session import Logoff, Logon
from sekimori.protocol.events.web import Browser, Transition, WebVisit
from sekimori.protocol.events.window import FocusSpan, WindowFocus, WindowInfo

__all__ = ["KIND_WEIGHTS", "SEARCH_FRAGMENT", "make_catalog"]

# Events per 10,000 of each kind.
KIND_WEIGHTS: dict[str, int] = {
    "web.visit": 3000,
    "window.focus": 2400,
    "process.started": 1300,
    "process.stopped": 1250,
    "file.created": 450,
    "file.modified": 700,
    "file.deleted": 200,
    "file.moved": 150,
    "file.copied_to_removable": 40,
    "device.usb_attached": 25,
    "device.usb_detached": 20,
    "session.logon": 60,
    "session.logoff": 55,
    "agent.collector_health": 30,
    "inventory.software_upgraded": 20,
}

_SEC = 1_000_000
_MIN = 60 * _SEC

# (host, [(path, title)]): what a Japanese office browses, intranet included.
_SITES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("www.google.com", (("/search?q={q}", "{q} - Google 検索"),)),
    ("www.google.co.jp", (("/search?q={q}", "{q} - Google 検索"),)),
    ("mail.google.com", (("/mail/u/0/#inbox", "受信トレイ - Gmail"),)),
    ("outlook.office.com", (("/mail/inbox/id/{id}", "メール - Outlook"),
                            ("/calendar/view/week", "予定表 - Outlook"))),
    ("teams.microsoft.com", (("/v2/?chat={id}", "チャット | Microsoft Teams"),)),
    ("www.yahoo.co.jp", (("/", "Yahoo! JAPAN"),)),
    ("news.yahoo.co.jp", (("/articles/{id}", "{n} - Yahoo!ニュース"),)),
    ("www.nikkei.com", (("/article/DGXZQO{id}/", "{n} - 日本経済新聞"),)),
    ("github.com", (("/sekimori-dev/sekimori/pull/{k}", "Console: {w} by {u} · Pull Request #{k}"),
                    ("/sekimori-dev/sekimori/issues/{k}",
                     "{w} · Issue #{k} · sekimori-dev/sekimori"))),
    ("stackoverflow.com", (("/questions/{k}/{w}", "{w} - Stack Overflow"),)),
    ("qiita.com", (("/{u}/items/{id}", "{w}の使い方まとめ - Qiita"),)),
    ("zenn.dev", (("/{u}/articles/{id}", "{w}入門 | Zenn"),)),
    ("docs.python.org", (("/3/library/{w}.html", "{w} — Python 3.13 documentation"),)),
    ("www.amazon.co.jp", (("/dp/B0{k}", "Amazon.co.jp: {n}"),)),
    ("www.rakuten.co.jp", (("/search/mall/{q}/", "【楽天市場】{q}の通販"),)),
    ("www.youtube.com", (("/watch?v={id}", "{n} - YouTube"),)),
    ("x.com", (("/{u}/status/{k}", "X ユーザーの{u}さん"),)),
    ("ja.wikipedia.org", (("/wiki/{w}", "{w} - Wikipedia"),)),
    ("chatgpt.com", (("/c/{id}", "ChatGPT"),)),
    ("www.jma.go.jp", (("/bosai/forecast/", "天気予報 - 気象庁"),)),
    ("transit.yahoo.co.jp", (("/search/result?from=東京&to={w}", "東京から{w} - Yahoo!路線情報"),)),
    ("intra.example.co.jp", (("/portal/notice/{k}", "社内ポータル - お知らせ {k}"),
                             ("/wf/request/{k}", "稟議申請 {k} - ワークフロー"))),
    ("example.cybozu.com", (("/k/{k}/show#record={id}", "案件管理 - kintone"),)),
    ("example.my.salesforce.com",
     (("/lightning/r/Opportunity/{id}/view", "商談: {n} | Salesforce"),)),
    ("example.backlog.jp", (("/view/PROJ-{k}", "[PROJ-{k}] {w} - Backlog"),)),
    ("secure.freee.co.jp", (("/expenses/{k}", "経費精算 - freee会計"),)),
    ("app.slack.com", (("/client/T0{k}/C0{id}", "Slack | general | 株式会社サンプル"),)),
    ("www.mhlw.go.jp", (("/stf/seisakunitsuite/{w}.html", "{w}｜厚生労働省"),)),
    ("www.e-gov.go.jp", (("/law/{k}", "e-Gov法令検索"),)),
    ("drive.google.com", (("/drive/folders/{id}", "マイドライブ - Google ドライブ"),)),
)  # fmt: skip
# The text the benchmark's log search looks for (a URL fragment from _SITES).
SEARCH_FRAGMENT = "sekimori-dev/sekimori/pull"

_WORDS = (
    "asyncio", "sqlite3", "pathlib", "見積書", "請求書", "議事録", "年末調整", "経費精算",
    "新幹線", "大阪", "名古屋", "有給休暇", "セキュリティ研修", "ログ検索", "json",
    "subprocess", "datetime", "インボイス制度", "テレワーク", "確定申告",
)  # fmt: skip
_HEADLINES = (
    "日経平均、続伸", "新型端末を発表", "円相場の動向", "サイバー攻撃の被害拡大",
    "年末商戦が本格化", "来年度予算案の概要", "生成AIの業務活用", "台風の進路予想",
)  # fmt: skip
_BROWSERS: tuple[tuple[Browser, str], ...] = (
    ("chrome", "Default"), ("chrome", "Profile 1"), ("firefox", "default-release"),
    ("edge", "Default"), ("chromium", "Default"),
)  # fmt: skip
_TRANSITIONS: tuple[Transition, ...] = ("link", "link", "link", "typed", "bookmark", "reload")


def _fill(rng: random.Random, text: str, user: str) -> str:
    return text.format(
        q=rng.choice(_WORDS),
        id=f"{rng.getrandbits(40):010x}",
        k=rng.randrange(100, 99_999),
        n=rng.choice(_HEADLINES),
        w=rng.choice(_WORDS),
        u=user,
    )


def _web(rng: random.Random, count: int) -> list[Variant]:
    out = []
    for _ in range(count):
        host, pages = rng.choice(_SITES)
        path, title = rng.choice(pages)
        author = rng.choice(("tanaka-h", "k-sato", "yamada.yui", "dev-ito"))
        browser, profile = rng.choice(_BROWSERS)
        payload = WebVisit(
            url=f"https://{host}{_fill(rng, path, author)}",
            title=_fill(rng, title, author),
            host=host,
            browser=browser,
            profile=profile,
            transition=rng.choice(_TRANSITIONS),
        )
        out.append(make_variant("web.visit", payload, os_user=USER))
    return out


# (application, instance, exe, titles): WM_CLASS as the window collector reports it.
_APPS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("firefox", "Navigator", "/usr/lib/firefox/firefox",
     ("受信トレイ - Outlook — Mozilla Firefox", "Yahoo! JAPAN — Mozilla Firefox",
      "社内ポータル - お知らせ — Mozilla Firefox")),
    ("Google-chrome", "google-chrome", "/opt/google/chrome/chrome",
     ("チャット | Microsoft Teams - Google Chrome", "案件管理 - kintone - Google Chrome",
      "Google 検索 - Google Chrome")),
    ("libreoffice-calc", "libreoffice", "/usr/lib/libreoffice/program/soffice.bin",
     ("見積書_2026年11月.ods - LibreOffice Calc", "売上集計.xlsx - LibreOffice Calc")),
    ("libreoffice-writer", "libreoffice", "/usr/lib/libreoffice/program/soffice.bin",
     ("議事録_定例会議.docx - LibreOffice Writer", "提案書_第2版.odt - LibreOffice Writer")),
    ("Code", "code", "/usr/share/code/code",
     ("main.py - sekimori - Visual Studio Code", "README.md - tools - Visual Studio Code")),
    ("Gnome-terminal", "gnome-terminal-server", "/usr/libexec/gnome-terminal-server",
     (f"{USER}@localhost: ~", f"{USER}@localhost: ~/work")),
    ("thunderbird", "Mail", "/usr/lib/thunderbird/thunderbird",
     ("受信トレイ - Mozilla Thunderbird", "作成: 見積書送付の件 - Thunderbird")),
    ("Slack", "slack", "/usr/lib/slack/slack", ("Slack | general | 株式会社サンプル",)),
    ("org.gnome.Nautilus", "org.gnome.Nautilus", "/usr/bin/nautilus",
     ("ダウンロード", "共有フォルダ")),
    ("Evince", "evince", "/usr/bin/evince", ("契約書_最終版.pdf", "就業規則.pdf")),
)  # fmt: skip


def _window_info(rng: random.Random) -> WindowInfo:
    app, instance, exe, titles = rng.choice(_APPS)
    return WindowInfo(
        window=0x2000000 + rng.randrange(0x100000) * 8,
        title=rng.choice(titles),
        application=app,
        instance=instance,
        pid=rng.randrange(1500, 400_000),
        exe=exe,
        user=USER,
    )


def _focus(rng: random.Random, count: int) -> list[Variant]:
    out = []
    for _ in range(count):
        now, before = _window_info(rng), _window_info(rng)
        previous = FocusSpan(window=before, start_us=START, duration_us=DURATION)
        payload = WindowFocus(
            cause="title" if before.application == now.application else "focus",
            window=now,
            # No span ends when focus moves while the user is idle.
            previous=previous if rng.random() < 0.9 else None,
        )
        out.append(
            make_variant("window.focus", payload, os_user=USER, duration_us=(2 * _SEC, 20 * _MIN))
        )
    return out


# (name, exe, argv, runs as root, typical lifetime in seconds)
_PROGRAMS: tuple[tuple[str, str, tuple[str, ...], bool, int], ...] = (
    ("bash", "/usr/bin/bash", ("bash",), False, 3600),
    ("chrome", "/opt/google/chrome/chrome",
     ("/opt/google/chrome/chrome", "--type=renderer", "--lang=ja", "--num-raster-threads=2",
      "--renderer-client-id=42", "--shared-files"), False, 900),
    ("firefox", "/usr/lib/firefox/firefox",
     ("/usr/lib/firefox/firefox", "-contentproc", "-childID", "7", "-isForBrowser", "tab"),
     False, 1200),
    ("soffice.bin", "/usr/lib/libreoffice/program/soffice.bin",
     ("/usr/lib/libreoffice/program/soffice.bin", "--calc",
      f"/home/{USER}/Documents/見積書_2026年11月.ods"), False, 2400),
    ("python3", "/usr/bin/python3.12",
     ("python3", f"/home/{USER}/work/tools/集計.py", "--month", "2026-11"), False, 30),
    ("git", "/usr/bin/git", ("git", "status", "--short"), False, 1),
    ("ssh", "/usr/bin/ssh", ("ssh", "-p", "22", "deploy@10.20.1.15"), False, 1800),
    ("code", "/usr/share/code/code",
     ("/usr/share/code/code", "--type=utility", "--utility-sub-type=node.mojom.NodeService"),
     False, 3600),
    ("evince", "/usr/bin/evince", ("evince", f"/home/{USER}/Downloads/契約書_最終版.pdf"),
     False, 600),
    ("zip", "/usr/bin/zip", ("zip", "-r", f"/home/{USER}/送付用.zip", "資料"), False, 3),
    ("curl", "/usr/bin/curl", ("curl", "-fsS", "https://intra.example.co.jp/api/health"), False, 1),
    ("apt-get", "/usr/bin/apt-get", ("apt-get", "-qq", "update"), True, 40),
    ("unattended-upgr", "/usr/bin/python3.12",
     ("/usr/bin/python3", "/usr/bin/unattended-upgrade"), True, 120),
    ("logrotate", "/usr/sbin/logrotate", ("/usr/sbin/logrotate", "/etc/logrotate.conf"), True, 2),
    ("sshd", "/usr/sbin/sshd", ("sshd:", f"{USER}", "[priv]"), True, 1800),
    ("cupsd", "/usr/sbin/cupsd", ("/usr/sbin/cupsd", "-l"), True, 86_400),
    ("fwupdmgr", "/usr/bin/fwupdmgr", ("/usr/bin/fwupdmgr", "refresh"), True, 20),
)  # fmt: skip


def _processes(rng: random.Random, count: int) -> tuple[list[Variant], list[Variant]]:
    started, stopped = [], []
    for _ in range(count):
        name, exe, argv, root, lifetime = rng.choice(_PROGRAMS)
        user, uid = ("root", 0) if root else (USER, 1000)
        pid, ppid = rng.randrange(1500, 400_000), rng.randrange(1, 1500)
        start = ProcessStarted(
            pid=pid,
            ppid=ppid,
            name=name,
            exe=exe,
            argv=list(argv),
            user=user,
            uid=uid,
            start_time_us=TIME,
            sha256=f"{rng.getrandbits(256):064x}",
            hash_status="ok",
        )
        stop = ProcessStopped(
            pid=pid,
            ppid=ppid,
            name=name,
            exe=exe,
            user=user,
            uid=uid,
            start_time_us=START,
            duration_us=DURATION,
            exact_time=True,
        )
        started.append(make_variant("process.started", start, os_user=user))
        stopped.append(
            make_variant(
                "process.stopped",
                stop,
                os_user=user,
                duration_us=(lifetime * _SEC // 4, lifetime * _SEC * 2),
            )
        )
    return started, stopped


_FOLDERS = ("Documents", "Downloads", "Desktop", "Documents/案件", "Documents/経理/2026年度")
_FILES = (
    "見積書_2026年11月.xlsx", "議事録_定例会議.docx", "顧客リスト.csv", "提案書_第2版.pptx",
    "契約書_最終版.pdf", "report.md", "data.json", "写真_001.jpg", "請求書_11月分.pdf",
    "売上集計.ods", "backup.tar.gz", "設計書_v3.docx",
)  # fmt: skip


def _path(rng: random.Random) -> str:
    return f"/home/{USER}/{rng.choice(_FOLDERS)}/{rng.choice(_FILES)}"


def _files(rng: random.Random, count: int) -> dict[str, list[Variant]]:
    out: dict[str, list[Variant]] = {}
    for _ in range(count):
        path, other, size = _path(rng), _path(rng), rng.randrange(200, 8_000_000)
        name = path.rsplit("/", 1)[1]
        dest = rng.choice((f"/home/{USER}/.local/share/Trash/files/{name}", other))
        payloads: tuple[tuple[str, Payload], ...] = (
            ("file.created", FileCreated(path=path, size=size, owner=USER)),
            ("file.modified", FileModified(path=path, size=size, owner=USER, writes=1 + size % 4)),
            ("file.deleted", FileDeleted(path=path)),
            ("file.moved", FileMoved(src=path, dest=dest, size=size, owner=USER)),
        )
        for kind, payload in payloads:
            out.setdefault(kind, []).append(make_variant(kind, payload, os_user=USER))
    return out


UsbCategory = Literal["mass_storage", "phone_camera", "hid", "printer", "hub", "other"]
# (vendor, product id, manufacturer, product, category, interface class)
_USB: tuple[tuple[str, str, str, str, UsbCategory, str], ...] = (
    ("0781", "5583", "SanDisk", "Ultra Fit", "mass_storage", "08"),
    ("0951", "1666", "Kingston", "DataTraveler 3.0", "mass_storage", "08"),
    ("056e", "6008", "ELECOM", "MF-PKU3", "mass_storage", "08"),
    ("0411", "01e8", "BUFFALO", "RUF3-K", "mass_storage", "08"),
    ("05ac", "12a8", "Apple Inc.", "iPhone", "phone_camera", "06"),
    ("04e8", "6860", "SAMSUNG", "Galaxy", "phone_camera", "06"),
    ("046d", "c52b", "Logitech", "USB Receiver", "hid", "03"),
    ("413c", "2113", "Dell", "KB216 Wired Keyboard", "hid", "03"),
    ("04a9", "1827", "Canon", "iP2700 series", "printer", "07"),
)


def _usb(rng: random.Random, count: int) -> tuple[list[Variant], list[Variant]]:
    attached: list[Variant] = []
    detached: list[Variant] = []
    for _ in range(count):
        vendor, product_id, maker, product, category, interface = rng.choice(_USB)
        port = f"{rng.randrange(1, 4)}-{rng.randrange(1, 5)}"
        bus, address = rng.randrange(1, 4), rng.randrange(2, 60)
        serial = f"{rng.getrandbits(64):016X}"
        for kind, struct, into in (
            ("device.usb_attached", UsbAttached, attached),
            ("device.usb_detached", UsbDetached, detached),
        ):
            payload = struct(
                port=port,
                bus=bus,
                address=address,
                vendor_id=vendor,
                product_id=product_id,
                interface_classes=[interface],
                manufacturer=maker,
                product=product,
                serial=serial,
                category=category,
            )
            into.append(make_variant(kind, payload, os_user=None))
    return attached, detached


def _removable(rng: random.Random, count: int) -> list[Variant]:
    out = []
    for _ in range(count):
        label = rng.choice(("KINGSTON", "SANDISK", "USBDRIVE", "ELECOM", "3C2A-11F0"))
        mount = f"/media/{USER}/{label}"
        payload = FileCopiedToRemovable(
            path=f"{mount}/{rng.choice(_FILES)}",
            operation="created",
            size=rng.randrange(10_000, 50_000_000),
            owner=USER,
            mount_point=mount,
            device=rng.choice(("/dev/sdb1", "/dev/sdc1")),
        )
        out.append(make_variant("file.copied_to_removable", payload, os_user=USER))
    return out


def _sessions(rng: random.Random, count: int) -> tuple[list[Variant], list[Variant]]:
    logons, logoffs = [], []
    for _ in range(count):
        remote = rng.random() < 0.15
        if remote:
            tty, host = "pts/0", f"10.20.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        else:
            tty, host = rng.choice((":0", "tty2", ":1")), ""
        pid = rng.randrange(800, 90_000)
        logon = Logon(
            user=USER, tty=tty, host=host, address=host, remote=remote, pid=pid, login_time_us=TIME
        )
        logoff = Logoff(
            user=USER, tty=tty, host=host, address=host, remote=remote, pid=pid, login_time_us=START
        )
        logons.append(make_variant("session.logon", logon, os_user=USER))
        logoffs.append(
            make_variant(
                "session.logoff", logoff, os_user=USER, duration_us=(10 * _MIN, 10 * 3600 * _SEC)
            )
        )
    return logons, logoffs


def _health(rng: random.Random) -> list[Variant]:
    payloads = [
        CollectorHealth(collector=c, status="running")
        for c in ("process", "window", "web", "file", "device", "session", "inventory")
    ]
    for collector, reason in (
        ("window", "no display: no X session is running"),
        ("web", "profile locked: database is locked"),
        ("file", "inotify watch limit reached (8192)"),
    ):
        payloads.append(
            CollectorHealth(
                collector=collector, status="failed", reason=reason, restarts=rng.randrange(1, 9)
            )
        )
    return [make_variant("agent.collector_health", p, os_user=None) for p in payloads]


def _upgrades() -> list[Variant]:
    out = []
    for name, old, new in (
        ("firefox", "132.0.2", "133.0"),
        ("google-chrome-stable", "131.0.6778.69-1", "131.0.6778.85-1"),
        ("libssl3", "3.0.13-0ubuntu3.3", "3.0.13-0ubuntu3.4"),
        ("openssh-client", "1:9.6p1-3ubuntu13.5", "1:9.6p1-3ubuntu13.7"),
        ("linux-firmware", "20240318.git3b128b60-0ubuntu2.5", "20240318.git3b128b60-0ubuntu2.6"),
        ("tzdata", "2024a-3ubuntu1.1", "2024b-0ubuntu0.24.04"),
    ):
        payload = SoftwareUpgraded(
            manager="dpkg",
            name=name,
            architecture="amd64",
            from_version=old,
            to_version=new,
            source=name,
            source_version=new,
        )
        out.append(make_variant("inventory.software_upgraded", payload, os_user=None))
    return out


def make_catalog(seed: int, size: int = 600) -> dict[str, list[Variant]]:
    """Every kind of ``KIND_WEIGHTS``, each with up to ``size`` variants."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not a secret
    started, stopped = _processes(rng, size)
    attached, detached = _usb(rng, 60)
    logons, logoffs = _sessions(rng, 60)
    catalog = {
        "web.visit": _web(rng, size * 2),
        "window.focus": _focus(rng, size),
        "process.started": started,
        "process.stopped": stopped,
        **_files(rng, size // 2),
        "file.copied_to_removable": _removable(rng, 60),
        "device.usb_attached": attached,
        "device.usb_detached": detached,
        "session.logon": logons,
        "session.logoff": logoffs,
        "agent.collector_health": _health(rng),
        "inventory.software_upgraded": _upgrades(),
    }
    if set(catalog) != set(KIND_WEIGHTS):
        raise AssertionError("the catalog and KIND_WEIGHTS disagree")
    return catalog
