"""The ``sekimori`` command."""
