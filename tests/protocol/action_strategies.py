"""Hypothesis strategies for the signed-action messages (``operators``, ``action``,
``operators_applied``, ``action_data``, ``action_result``)."""

from __future__ import annotations

from hypothesis import strategies as st

from sekimori.protocol.actions import ProofStep, Signature, SignedCommand
from sekimori.protocol.messages import (
    ActionData,
    ActionRequest,
    ActionResult,
    OperatorsApplied,
    OperatorsUpdate,
)
from sekimori.protocol.signing import SignedKeyring

hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
nonces = st.binary(min_size=16, max_size=16).map(bytes.hex)
signatures = st.builds(
    Signature,
    key_id=hex64,
    kind=st.sampled_from(["ed25519", "webauthn"]),
    signature=st.binary(min_size=1, max_size=80),
    authenticator_data=st.binary(max_size=60),
    client_data_json=st.binary(max_size=60),
)
signed_commands = st.builds(
    SignedCommand,
    body=st.binary(min_size=1, max_size=200),
    signatures=st.lists(signatures, max_size=3),
)
proofs = st.lists(
    st.builds(ProofStep, left=st.booleans(), sibling=st.binary(min_size=32, max_size=32)),
    max_size=20,
)

requests = st.builds(
    ActionRequest, command=signed_commands, device_proof=proofs, attachment=st.binary(max_size=100)
)
operators_updates = st.builds(
    OperatorsUpdate,
    chain=st.lists(
        st.builds(
            SignedKeyring,
            body=st.binary(min_size=1, max_size=200),
            signatures=st.lists(signatures, max_size=3),
        ),
        max_size=3,
    ),
)
operators_applieds = st.builds(
    OperatorsApplied,
    version=st.integers(min_value=0, max_value=2**31 - 1),
    ok=st.booleans(),
    error=st.text(max_size=200),
)
datas = st.builds(
    ActionData,
    nonce=nonces,
    offset=st.integers(min_value=0, max_value=2**40),
    chunk=st.binary(max_size=200),
)
results = st.builds(
    ActionResult,
    nonce=nonces,
    status=st.sampled_from(["done", "failed", "refused"]),
    reason=st.text(max_size=200),
    exit_code=st.none() | st.integers(min_value=-(2**31), max_value=2**31),
    output=st.text(max_size=200),
    data_size=st.integers(min_value=0, max_value=2**40),
    data_sha256=st.just("") | hex64,
)
