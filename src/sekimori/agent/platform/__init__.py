"""OS-specific code, one backend subpackage per OS (``linux`` today).

Collectors import what they need from ``sekimori.agent.platform.current`` so that a
Windows or macOS backend can follow with the same functions.
"""
