"""``sekimori vuln import|fetch|status``: real files, a real store, a real (loopback)
HTTP server for fetch; every import audited, a refused file changes nothing."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sekimori.cli.main import main
from sekimori.server.store.engine import create_store_engine
from sekimori.server.store.schema import audit_log, kev_entries, vulnerabilities
from tests.server.vuln.fixtures import FIXTURES, KEV, NVD

pytestmark = pytest.mark.usefixtures("no_sekimori_environment")


def _store(data_dir: Path) -> sa.Engine:
    return create_store_engine(f"sqlite:///{data_dir / 'sekimori.db'}")


def test_import_status_and_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    assert main(["--data-dir", str(data_dir), "vuln", "import", str(KEV)]) == 0
    assert main(["--data-dir", str(data_dir), "vuln", "import", str(NVD), "--kind", "nvd"]) == 0
    cut = tmp_path / "cut.json"
    cut.write_bytes(NVD.read_bytes()[:2000])
    assert main(["--data-dir", str(data_dir), "vuln", "import", str(cut)]) == 1
    assert "refused, nothing changed" in capsys.readouterr().err
    assert main(["--data-dir", str(data_dir), "vuln", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["vulnerabilities"] == 2 and status["known_exploited"] == 1
    feeds = {f["kind"]: f for f in status["feeds"]}
    assert feeds["osv"]["stale"] and feeds["kev"]["records"] == 7
    engine = _store(data_dir)
    with engine.connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.action, audit_log.c.detail)).all()
    engine.dispose()
    assert [a for a, _ in actions] == ["vuln.import"] * 3
    assert json.loads(actions[2][1])["status"] == "failed"


@pytest.fixture
def feed_server() -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(FIXTURES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_from_configured_urls(tmp_path: Path, feed_server: str) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    config = tmp_path / "sekimori.toml"
    config.write_text(
        "[[server.vuln.feeds]]\n"
        f'kind = "kev"\nurl = "{feed_server}/kev.json"\n'
        "[[server.vuln.feeds]]\n"
        f'kind = "nvd"\nurl = "{feed_server}/missing.json"\n',
        encoding="utf-8",
    )
    args = ["--config", str(config), "--data-dir", str(data_dir), "vuln", "fetch"]
    assert main(args) == 1  # the missing one fails, the other is imported
    engine = _store(data_dir)
    with engine.connect() as conn:
        kev = conn.execute(sa.select(sa.func.count()).select_from(kev_entries)).scalar_one()
        advisories = conn.execute(
            sa.select(sa.func.count()).select_from(vulnerabilities)
        ).scalar_one()
        actions = (
            conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.seq)).scalars().all()
        )
    engine.dispose()
    assert (kev, advisories) == (7, 0)
    assert sorted(actions) == ["vuln.fetch", "vuln.import"]
