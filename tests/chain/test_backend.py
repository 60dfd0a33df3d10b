"""The chain's clock: ``next_timestamp`` and ``advance_time``, whatever the wall clock does.

py-evm stamps each new pending block with ``max(parent + 1, wall clock)`` when it makes
it (after every block and after a snapshot is reverted), so on the embedded chain the
latest block can lie far behind the time the next transaction sees. The wall clock is
replaced here by one that runs an hour ahead of, or behind, the real one: no test
sleeps or reads the real time.
"""

from __future__ import annotations

import eth._utils.headers as evm_headers
import pytest
from eth_tester.exceptions import ValidationError as EthTesterRefusal
from web3.types import RPCEndpoint

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import EmbeddedBackend, _rpcmethods
from idlegrid.chain._rpcwire import RpcFault

from ..conftest import Env

HOUR = 3600
#: anvil's call that stamps the next block with a given time
SET_NEXT_TIMESTAMP = RPCEndpoint("evm_setNextBlockTimestamp")


def _pending(backend: EmbeddedBackend) -> int:
    return int(backend.tester.get_block_by_number("pending")["timestamp"])


def _set_wall_clock(monkeypatch: pytest.MonkeyPatch, offset: int) -> None:
    """Make py-evm's wall clock run ``offset`` seconds from the real one."""
    real = evm_headers.eth_now
    monkeypatch.setattr(evm_headers, "eth_now", lambda: real() + offset)


@pytest.fixture
def embedded() -> EmbeddedBackend:
    return EmbeddedBackend(accounts=2)


def test_advance_time_when_the_wall_clock_ran_ahead_of_the_chain(
    embedded: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a long (or loaded) session: the wall clock is an hour past the latest
    # block when a snapshot is reverted, so the next block is stamped an hour later
    snapshot = embedded.snapshot()
    _set_wall_clock(monkeypatch, HOUR)
    embedded.revert(snapshot)
    latest, pending = embedded.timestamp(), _pending(embedded)
    assert pending >= latest + HOUR - 5
    with pytest.raises(EthTesterRefusal, match="Space time continuum"):
        embedded.tester.time_travel(latest + 120 + 1)  # what advance_time used to do

    # Execute
    embedded.advance_time(120)

    # Assert: exactly 120 s after the time the next transaction would have seen
    assert embedded.timestamp() == pending + 120
    assert embedded.next_timestamp() > pending + 120


def test_advance_time_when_the_wall_clock_lags_the_chain(
    embedded: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the chain has travelled a day ahead; the wall clock is even further behind
    embedded.advance_time(24 * HOUR)
    _set_wall_clock(monkeypatch, -HOUR)
    embedded.advance_time(0)
    pending = embedded.next_timestamp()
    assert pending == embedded.timestamp() + 1

    # Execute
    embedded.advance_time(120)

    # Assert
    assert embedded.timestamp() == pending + 120
    assert embedded.next_timestamp() == pending + 121


def test_advance_time_by_zero_mines_a_block_at_the_chain_time(
    embedded: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _set_wall_clock(monkeypatch, HOUR)
    embedded.revert(embedded.snapshot())
    block, pending = embedded.block_number(), embedded.next_timestamp()

    # Execute
    embedded.advance_time(0)

    # Assert
    assert embedded.block_number() == block + 1
    assert embedded.timestamp() == pending


def test_deadline_passes_after_advance_time_with_the_clock_ahead(
    embedded: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the case of test_permit_expires_once_time_passes on a loaded machine
    snapshot = embedded.snapshot()
    _set_wall_clock(monkeypatch, HOUR)
    embedded.revert(snapshot)
    deadline = embedded.next_timestamp() + 60

    # Execute
    embedded.advance_time(120)

    # Assert
    assert embedded.next_timestamp() > deadline


def test_next_timestamp_is_the_time_a_transaction_sees(env: Env) -> None:
    # Prepare
    alice, bob = env.users[0], env.users[1]
    before = env.backend.next_timestamp()

    # Execute
    result = env.token.transfer(bob.address, 1, sender=alice)

    # Assert: exact on the embedded chain; anvil's clock follows the wall clock
    mined = env.backend.timestamp()
    assert env.backend.block_number() == result.block
    if env.kind == "embedded":
        assert mined == before
    else:
        assert mined >= before


def test_advance_time_moves_the_next_transaction_forward(env: Env) -> None:
    # Prepare
    alice, bob = env.users[0], env.users[1]
    before = env.now()

    # Execute
    env.backend.advance_time(HOUR)
    result = env.token.transfer(bob.address, 1, sender=alice)

    # Assert
    assert env.backend.block_number() == result.block
    assert env.backend.timestamp() >= before + HOUR


def test_advance_time_backwards_is_refused(env: Env) -> None:
    # Prepare
    block = env.backend.block_number()

    # Execute
    with pytest.raises(InvalidInput):
        env.backend.advance_time(-1)

    # Assert
    assert env.backend.block_number() == block


# -- the embedded chain's JSON-RPC clock methods -------------------------------------------------
def test_rpc_evm_mine_with_a_timestamp_stamps_that_block(embedded: EmbeddedBackend) -> None:
    # Prepare
    rpc = _rpcmethods.TesterRpc(embedded.tester)
    target = embedded.next_timestamp() + HOUR

    # Execute
    rpc.call("evm_mine", [hex(target)])

    # Assert: as anvil, the block carries the timestamp asked for
    assert embedded.timestamp() == target


def test_rpc_evm_mine_in_the_past_is_refused(embedded: EmbeddedBackend) -> None:
    # Prepare
    rpc = _rpcmethods.TesterRpc(embedded.tester)
    block = embedded.block_number()

    # Execute
    with pytest.raises(RpcFault, match="timestamp error"):
        rpc.call("evm_mine", [hex(embedded.timestamp() - 10)])

    # Assert
    assert embedded.block_number() == block


def test_rpc_increase_time_then_mine_is_exact(embedded: EmbeddedBackend) -> None:
    # Prepare
    rpc = _rpcmethods.TesterRpc(embedded.tester)
    pending = embedded.next_timestamp()

    # Execute
    rpc.call("evm_increaseTime", [HOUR])
    rpc.call("evm_mine", [])

    # Assert
    assert embedded.timestamp() == pending + HOUR


def test_a_transaction_that_reverts_once_mined_reports_the_contracts_reason(env: Env) -> None:
    # Prepare: a channel whose expiry is still ahead when the call is built, but behind
    # the block the transaction lands in; gas is given, so nothing is estimated first
    client, provider = env.users[0], env.users[1]
    env.token.approve(env.market.address, 10, sender=client)
    expiry = env.now() + 100
    data = env.market._c.encode_abi("open_channel", args=[provider.address, 10, expiry, 7])
    if env.kind == "anvil":  # only the block it is mined in lies past the expiry
        env.backend.w3.provider.make_request(SET_NEXT_TIMESTAMP, [expiry + 1])
    else:  # eth-tester runs a transaction as it is sent
        env.backend.advance_time(200)

    # Execute
    with pytest.raises(ContractReverted) as exc:
        env.backend.send(
            client, {"to": env.market.address, "data": data, "gas": 300_000}, function="open"
        )

    # Assert
    assert exc.value.reason == "market: expiry in the past"
    env.conservation()


def test_a_deadline_at_the_edge_of_the_next_block_passes_its_gas_estimate(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gas is estimated on the block the transaction will be mined in. A node estimates
    on the latest block when told nothing, and anvil stamps that with the time it was
    mined: once no block was mined for a while, an expiry a year from the chain's time
    now (the furthest the market allows) failed its estimate, though it would pass."""
    # Prepare: the pending block an hour ahead of the latest
    client, provider = env.users[0], env.users[1]
    env.token.approve(env.market.address, 10, sender=client)
    latest = env.backend.timestamp()
    if env.kind == "anvil":
        env.backend.w3.provider.make_request(SET_NEXT_TIMESTAMP, [latest + HOUR])
    else:
        _set_wall_clock(monkeypatch, 2 * HOUR)  # the latest block may lie ahead of it
        env.backend.revert(env.backend.snapshot())  # py-evm makes a pending block, now
    now = env.now()
    assert now >= latest + HOUR
    expiry = now + env.market._call("MAX_CHANNEL_TTL")

    # Execute
    terms, _ = env.market.open_channel(provider.address, 10, expiry, sender=client)

    # Assert
    assert env.market.channel(terms).expiry == expiry
    env.conservation()
