"""Shared fixtures.

``env`` is the factory fixture behind the contract suites: every test that
takes it runs twice, on the embedded EVM (py-evm) and on a real anvil node,
against one deployment per backend, each test inside a snapshot that is
reverted afterwards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from idlegrid.chain import (
    TOKEN,
    AnvilNode,
    ChainBackend,
    EmbeddedBackend,
    Ledger,
    LedgerConfig,
    MarketClient,
    RegistryClient,
    RpcBackend,
    TokenClient,
)
from idlegrid.protocol import Account
from tests import _stackcache

# The CLI's consoles are made on import and keep the width they see then; pytest-xdist's
# workers start with COLUMNS=80, which would cut the addresses the CLI tests look for.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

ACCOUNTS = 20
CONFIG = LedgerConfig(min_stake=100 * TOKEN, unbonding_delay=7 * 24 * 3600, close_window=24 * 3600)
START_BALANCE = 10_000 * TOKEN


@dataclass
class Env:
    """A deployed ledger with funded accounts: owner (faucet) plus users."""

    kind: str
    backend: ChainBackend
    ledger: Ledger
    owner: Account
    users: list[Account]

    @property
    def token(self) -> TokenClient:
        return self.ledger.token

    @property
    def registry(self) -> RegistryClient:
        return self.ledger.registry

    @property
    def market(self) -> MarketClient:
        return self.ledger.market

    def now(self) -> int:
        """The chain's time for the next transaction (not the latest block's, which
        lags the wall clock after a snapshot is reverted)."""
        return self.backend.next_timestamp()

    def all_addresses(self) -> list[str]:
        return [self.owner.address, *(u.address for u in self.users)]

    def conservation(self, *extra: str) -> None:
        """Supply equals the sum of balances of every address that ever held tokens
        (``extra``: contracts a test deployed that hold some)."""
        holders = [*self.all_addresses(), self.registry.address, self.market.address, *extra]
        for key in ("oracle", "rewards", "disputes"):  # a test's own ledger may have none
            if key in self.ledger.deployment.contracts:
                holders.append(self.ledger.deployment.address(key))
        assert self.token.total_supply() == sum(self.token.balance_of(h) for h in holders)


_STACKCACHE = "not installed"

#: the modules that take a minute or more (``--durations``), longest first: the suite
#: runs on pytest-xdist workers a module at a time (``--dist loadfile``), and a long
#: module taken last keeps one worker busy alone at the end. The Makefile passes
#: ``--no-loadscope-reorder``: by default xdist hands out the modules with the most tests
#: first, whatever the collection's order, and the one-test benchmarks came last.
HEAVY_FIRST = (
    "tests/bench/test_train_bench.py",
    "tests/chain/test_invariants.py",
    "tests/network/test_federated.py",
    "tests/bench/test_fl_bench.py",
    "tests/explorer/test_network.py",
    "tests/network/test_training.py",
    "tests/test_cli.py",
    "tests/oracle/test_zk.py",
    "tests/network/test_long_jobs.py",
    "tests/network/test_disputes.py",
    "tests/network/test_runs.py",
    "tests/network/test_verify.py",
    "tests/network/test_training_cli.py",
    "tests/bench/test_oracle_bench.py",
    "tests/bench/test_health_bench.py",
)


def fresh_cache(path: Path) -> Path:
    """An empty ``IDLEGRID_CACHE`` for a test's commands, but for the compiled contracts
    (copied from this session's cache): with none, each command would compile every
    contract again, 30 s of CPU that no such test is about."""
    from idlegrid.chain import compile_all
    from idlegrid.chain._compile import cache_dir

    compile_all()  # compiled or read: the session's cache holds them after
    shutil.copytree(cache_dir() / "vyper", path / "vyper", ignore=shutil.ignore_patterns("*.tmp"))
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules of ``HEAVY_FIRST`` first, in its order; the rest as collected."""
    rank = {path: i for i, path in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_configure(config: pytest.Config) -> None:
    """Install the frame-stack chunk cache before any test runs (tests/_stackcache.py)."""
    global _STACKCACHE
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider
    directory = cache.mkdir("stackcache") if cache is not None else Path(".pytest_cache")
    _STACKCACHE = _stackcache.install(Path(directory))


def pytest_report_header(config: pytest.Config) -> str:
    return f"frame-stack chunk cache (CPython gh-142183): {_STACKCACHE}"


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    with AnvilNode(accounts=ACCOUNTS) as node:
        yield node


def _make_env(kind: str, request: pytest.FixtureRequest) -> Env:
    backend: ChainBackend
    if kind == "embedded":
        backend = EmbeddedBackend(accounts=ACCOUNTS)
    else:
        node = request.getfixturevalue("anvil_node")
        backend = RpcBackend(node.url, dev_account_count=ACCOUNTS)
    accounts = backend.dev_accounts()
    owner, users = accounts[0], accounts[1:]
    ledger = Ledger.deploy(backend, owner, CONFIG)
    for user in users:
        ledger.token.mint(user.address, START_BALANCE, sender=owner)
    return Env(kind, backend, ledger, owner, users)


@pytest.fixture(scope="session", params=["embedded", "anvil"])
def session_env(request: pytest.FixtureRequest) -> Env:
    return _make_env(request.param, request)


@pytest.fixture
def env(session_env: Env) -> Iterator[Env]:
    snap = session_env.backend.snapshot()
    try:
        yield session_env
    finally:
        session_env.backend.revert(snap)
