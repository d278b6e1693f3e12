"""Signed remote actions on the agent: verify, check the local policy, run, report.

See docs/actions.md. ``base`` defines what a handler is; ``executor`` (verification,
nonces, local policy, local audit log) runs them; one module per action family.
"""
