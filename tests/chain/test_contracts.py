"""The registry of contracts drives deploy, load and index, on both backends.

A test-local table adds the ``Beacon`` (tests/chain/beacon.py) to the ledger's
contracts; nothing in ``idlegrid.chain`` is changed for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from idlegrid import ConfigError
from idlegrid.chain import (
    CONTRACTS,
    ContractSpec,
    Deployment,
    Indexer,
    Ledger,
    MarketClient,
    ModelRegistryClient,
    OracleClient,
    TokenClient,
    load_deployment,
)

from ..conftest import CONFIG, Env
from .beacon import BeaconClient, signals, with_beacon, write_source


@pytest.fixture(scope="module")
def contracts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ContractSpec, ...]:
    """The ledger's registry plus the Beacon, compiled from a file outside contracts/."""
    return with_beacon(write_source(tmp_path_factory.mktemp("beacon")))


def test_registry_lists_the_ledger_in_deployment_order() -> None:
    # Execute
    keys = [spec.key for spec in CONTRACTS]
    followed = {spec.name: sorted(spec.events) for spec in CONTRACTS if spec.events}

    # Assert: the token first (the others take its address), the market after the
    # registry (it is wired to it), the model registry, the oracle after both
    # registries (it reads them), the reward pool (it reads the model registry), and the
    # dispute contract (the market's arbiter) last:
    # it takes the oracle's address, whose outlier answers it disputes
    assert keys == ["token", "registry", "market", "models", "oracle", "rewards", "disputes"]
    assert {"ProviderRegistry", "JobMarket", "Disputes"} <= set(followed)
    assert "DisputeResolved" in followed["Disputes"]
    assert "VoucherRedeemed" in followed["JobMarket"]


def test_extra_contract_is_deployed_wired_and_reachable(
    env: Env, contracts: tuple[ContractSpec, ...]
) -> None:
    # Execute
    ledger = Ledger.deploy(env.backend, env.owner, CONFIG, contracts=contracts)
    beacon = ledger.client("beacon", BeaconClient)

    # Assert: deployed after the token (its constructor took the token's address),
    # wired to the market, and the core contracts are as before
    assert set(ledger.deployment.contracts) == {
        "token",
        "registry",
        "market",
        "disputes",
        "models",
        "oracle",
        "rewards",
        "beacon",
    }
    assert beacon.token() == ledger.token.address
    assert beacon.market() == ledger.market.address
    assert beacon.owner() == env.owner.address
    assert ledger.registry.market() == ledger.market.address
    assert ledger.market.arbiter() == ledger.deployment.address("disputes")
    assert isinstance(ledger.client("token", TokenClient), TokenClient)


def test_client_of_a_missing_or_mistyped_contract_raises(env: Env) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="beacon"):
        env.ledger.client("beacon", BeaconClient)
    with pytest.raises(ConfigError, match="MarketClient"):
        env.ledger.client("token", MarketClient)


def test_extra_contract_is_saved_loaded_and_indexed(
    env: Env, contracts: tuple[ContractSpec, ...], tmp_path: Path
) -> None:
    # Prepare: deploy, save the addresses as devnet.json does, load them back
    ledger = Ledger.deploy(env.backend, env.owner, CONFIG, contracts=contracts)
    saved = ledger.deployment.as_dict()
    loaded = load_deployment(
        env.backend.chain_id, saved, ledger.deployment.start_block, contracts=contracts
    )
    beacon = Ledger(env.backend, loaded, contracts=contracts).client("beacon", BeaconClient)
    sender = env.users[0]
    beacon.signal(7, sender=sender)
    beacon.signal(8, sender=sender)
    path = tmp_path / "index.db"

    # Execute
    with Indexer(env.backend, loaded, path, contracts=contracts) as index:
        first = index.sync()
        beacon.signal(9, sender=sender)
        second = index.sync()

    # Assert: the same deployment came back, and the Beacon's events are in its table
    assert loaded == ledger.deployment
    logs = env.backend.w3.eth.get_logs(
        {
            "fromBlock": loaded.start_block,
            "toBlock": "latest",
            "address": [Web3.to_checksum_address(a) for a in sorted(loaded.contracts.values())],
        }
    )
    assert first.events_applied + second.events_applied == len(logs)
    assert second.events_applied == 1
    assert signals(path) == [(sender.address, 7), (sender.address, 8), (sender.address, 9)]


def test_index_of_more_contracts_is_another_index(
    env: Env, contracts: tuple[ContractSpec, ...], tmp_path: Path
) -> None:
    # Prepare: an index of the ledger alone
    ledger = Ledger.deploy(env.backend, env.owner, CONFIG, contracts=contracts)
    path = tmp_path / "index.db"
    with Indexer(env.backend, ledger.deployment, path) as index:
        index.sync()

    # Execute / Assert: it never saw the Beacon's events, so it is not an index of them
    with pytest.raises(ConfigError, match="beacon"):
        Indexer(env.backend, ledger.deployment, path, contracts=contracts)


def test_load_deployment_success_and_failures() -> None:
    # Prepare: the four addresses a devnet.json holds, lowercase
    old = {
        "token": "0x" + "11" * 20,
        "registry": "0x" + "22" * 20,
        "market": "0x" + "33" * 20,
        "disputes": "0x" + "55" * 20,
        "models": "0x" + "66" * 20,
    }

    # Execute
    deployment = load_deployment(31337, old)
    newer = load_deployment(31337, {**old, "oracle": "0x" + "44" * 20})

    # Assert: checksummed; keys no spec knows are kept (a newer file still loads)
    assert deployment.market == "0x" + "33" * 20  # all digits: checksumming changes nothing
    assert deployment == Deployment(31337, old)
    assert newer.address("oracle") == "0x" + "44" * 20
    with pytest.raises(ConfigError, match="'market' \\(JobMarket\\)"):
        load_deployment(31337, {"token": old["token"], "registry": old["registry"]})
    with pytest.raises(ConfigError, match="'disputes' \\(Disputes\\)"):
        load_deployment(31337, {k: v for k, v in old.items() if k != "disputes"})
    with pytest.raises(ConfigError, match="key -> address"):
        load_deployment(31337, ["token"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no 'oracle' contract"):
        deployment.address("oracle")


def test_deployment_compares_and_hashes_by_value() -> None:
    # Prepare
    a = Deployment(1, {"token": "0x" + "aa" * 20}, 5)

    # Execute
    b = Deployment(1, {"token": "0x" + "AA" * 20}, 5)
    moved = a.replace(token="0x" + "bb" * 20)

    # Assert
    assert a == b and hash(a) == hash(b)
    assert moved != a and moved.start_block == 5
    assert a.as_dict() == {"token": b.token}


def test_a_deployment_without_the_later_oracle_still_loads(env: Env) -> None:
    # Prepare: the ledger's addresses as a file written before the oracle existed
    addresses = {k: v for k, v in env.ledger.deployment.contracts.items() if k != "oracle"}

    # Execute
    ledger = Ledger(env.backend, load_deployment(env.backend.chain_id, addresses))

    # Assert: everything else is there; asking for the oracle says it is not
    assert ledger.client("models", ModelRegistryClient).count() >= 0
    with pytest.raises(ConfigError, match="no OracleClient under 'oracle'"):
        ledger.client("oracle", OracleClient)
    with pytest.raises(ConfigError, match="no address for contract 'models'"):
        load_deployment(env.backend.chain_id, {k: v for k, v in addresses.items() if k != "models"})
