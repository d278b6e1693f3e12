"""First-run initialisation of a data directory (idempotent)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from sekimori.server.pki import PKI, default_server_names
from sekimori.server.store.engine import create_store_engine, migrate
from sekimori.server.store.groups import DEFAULT_GROUP
from sekimori.server.store.tokens import create_default_group
from sekimori.server.store.users import create_user, generate_password, user_count
from sekimori.settings import Settings

__all__ = ["InitResult", "initialize", "open_store"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InitResult:
    engine: sa.Engine
    pki: PKI
    # Set only on the run that created the first administrator: shown once, never stored.
    admin_password: str | None


def open_store(settings: Settings) -> sa.Engine:
    return create_store_engine(
        settings.database_url, sqlite_synchronous=settings.server.sqlite_synchronous
    )


def initialize(settings: Settings) -> InitResult:
    """Create the data directory, migrate the store, create the PKI, the default
    group and the first administrator (whose generated password is returned)."""
    settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = open_store(settings)
    migrate(engine)
    pki = PKI(settings.data_path / "pki")
    pki.initialize(default_server_names() + settings.server.tls_names)
    create_default_group(engine, DEFAULT_GROUP)
    password = None
    if user_count(engine) == 0:
        password = generate_password()
        create_user(engine, "admin", password, "administrator")
        log.info("created the first administrator account 'admin'")
    return InitResult(engine=engine, pki=pki, admin_password=password)
