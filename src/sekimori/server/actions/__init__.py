"""Signed remote actions on the server (issue 7, docs/actions.md): operator keyrings
and their proposals (``keyrings``), commands and their signatures (``commands``), the
script/package library (``library``) and delivery to connected agents on any replica
(``routing``). The console and the CLI call these functions; errors are
``ActionError`` with a message safe to show.

The server holds no operator private key: it stores what operators signed, checks
their signatures early (for feedback) and forwards; each agent verifies again.
"""

from __future__ import annotations

from sekimori.server.actions.commands import (
    DEFAULT_LIFETIME_SECONDS,
    CommandView,
    add_command_signature,
    cancel_command,
    collected_file,
    command_view,
    create_command,
    expire_due,
    list_commands,
    needed_signers,
    target_results,
)
from sekimori.server.actions.errors import ActionError, ActionNotFound
from sekimori.server.actions.keyrings import (
    ProposalView,
    add_credential,
    add_proposal_signature,
    credentials_of,
    current_fingerprint,
    current_keyring,
    init_keyring,
    keyring_chain,
    list_proposals,
    proposal_view,
    propose_keyring,
    withdraw_proposal,
)
from sekimori.server.actions.library import add_library_item, library_content, list_library
from sekimori.server.store.actions import deployment_id

__all__ = [
    "DEFAULT_LIFETIME_SECONDS",
    "ActionError",
    "ActionNotFound",
    "CommandView",
    "ProposalView",
    "add_command_signature",
    "add_credential",
    "add_library_item",
    "add_proposal_signature",
    "cancel_command",
    "collected_file",
    "command_view",
    "create_command",
    "credentials_of",
    "current_fingerprint",
    "current_keyring",
    "deployment_id",
    "expire_due",
    "init_keyring",
    "keyring_chain",
    "library_content",
    "list_commands",
    "list_library",
    "list_proposals",
    "needed_signers",
    "proposal_view",
    "propose_keyring",
    "target_results",
    "withdraw_proposal",
]
