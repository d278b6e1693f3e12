"""Sekimori: see and manage an organization's PCs from one place."""

__all__ = ["__version__"]

__version__ = "0.1.0"
