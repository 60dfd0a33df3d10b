"""Receipt leaves and channel ids: the hand-written ABI encodings equal eth_abi's."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from idlegrid import InvalidInput
from idlegrid.chain import ChannelTerms
from idlegrid.protocol import Account, Receipt

ADDRESSES = [Account.from_key(bytes([i]) * 32).address for i in range(1, 4)]
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
word = st.binary(min_size=32, max_size=32)
address = st.sampled_from(ADDRESSES).flatmap(lambda a: st.sampled_from([a, a.lower()]))


@given(
    channel=word,
    job_id=word,
    provider=address,
    spec=word,
    inputs=word,
    result=word,
    units=uint256,
    amount=uint256,
)
def test_receipt_encoding_equals_eth_abi(
    channel: bytes,
    job_id: bytes,
    provider: str,
    spec: bytes,
    inputs: bytes,
    result: bytes,
    units: int,
    amount: int,
) -> None:
    # Prepare
    receipt = Receipt(channel, job_id, provider, spec, inputs, result, units, amount)
    expected = encode(
        ["bytes32", "bytes32", "address", "bytes32", "bytes32", "bytes32", "uint256", "uint256"],
        [channel, job_id, provider.lower(), spec, inputs, result, units, amount],
    )

    # Execute, Assert
    assert receipt.abi_encoded() == expected
    assert receipt.leaf() == bytes(keccak(keccak(expected)))


@given(client=address, provider=address, deposit=uint256, expiry=uint256, salt=uint256)
def test_channel_id_equals_eth_abi(
    client: str, provider: str, deposit: int, expiry: int, salt: int
) -> None:
    # Prepare
    terms = ChannelTerms(client, provider, deposit, expiry, salt)
    expected = encode(
        ["address", "address", "uint256", "uint256", "uint256"],
        [client.lower(), provider.lower(), deposit, expiry, salt],
    )

    # Execute, Assert
    assert terms.id == bytes(keccak(expected))
    assert terms.id is terms.id  # computed once


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(InvalidInput):
        Receipt(
            bytes(32), bytes(32), ADDRESSES[0], bytes(32), bytes(32), bytes(32), 2**256, 0
        ).leaf()
    with pytest.raises(InvalidInput):
        _ = ChannelTerms(ADDRESSES[0], ADDRESSES[1], -1, 0, 0).id
    with pytest.raises(InvalidInput):
        _ = ChannelTerms(ADDRESSES[0], "0x1234", 1, 0, 0).id
