"""The exception tree: one root, documented, and foreign errors translated."""

from __future__ import annotations

import inspect

import pytest
import requests
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    Web3RPCError,
)

import idlegrid
import idlegrid.store
import idlegrid.workloads
from idlegrid import (
    ChainTimeout,
    ChainUnavailable,
    ContractReverted,
    IdlegridError,
    PeerError,
)
from idlegrid.chain import RpcBackend, free_port
from idlegrid.chain._errors import revert_reason, translate


def test_every_exception_descends_from_the_root_and_is_documented() -> None:
    tree = idlegrid._exceptions.__doc__ or ""
    for name in idlegrid._exceptions.__all__:
        cls = getattr(idlegrid, name)
        assert issubclass(cls, IdlegridError)
        assert cls.__doc__, name
        assert name in tree, f"{name} missing from the tree in _exceptions.py"


@pytest.mark.parametrize(
    ("foreign", "ours"),
    [
        (ContractLogicError("execution reverted: market: stale voucher"), ContractReverted),
        (TransactionFailed("market: stale voucher"), ContractReverted),
        (TimeExhausted("slow"), ChainTimeout),
        (ProviderConnectionError("down"), ChainUnavailable),
        (requests.exceptions.ConnectionError("refused"), ChainUnavailable),
        (ConnectionRefusedError("refused"), ChainUnavailable),
        (Web3RPCError("nonce too low"), ChainUnavailable),
        (BadFunctionCallOutput("no code"), ChainUnavailable),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), PeerError),
    ],
)
def test_translate_maps_foreign_errors(foreign: Exception, ours: type[IdlegridError]) -> None:
    with pytest.raises(ours) as exc, translate("f"):
        raise foreign
    assert exc.value.__cause__ is foreign


def test_revert_reason_keeps_the_contract_reason() -> None:
    assert revert_reason("execution reverted: market: stale voucher") == "market: stale voucher"
    assert revert_reason("'market: x'") == "market: x"
    assert revert_reason("") == "reverted without a reason"
    assert revert_reason("execution reverted: b''") == "reverted without a reason"
    assert revert_reason("execution reverted: b'token: x'") == "token: x"
    with pytest.raises(ContractReverted) as exc, translate("JobMarket.redeem"):
        raise ContractLogicError("execution reverted: market: stale voucher")
    assert exc.value.reason == "market: stale voucher"
    assert str(exc.value) == "JobMarket.redeem: market: stale voucher"


def test_dead_endpoint_raises_chain_unavailable() -> None:
    backend = RpcBackend(f"http://127.0.0.1:{free_port()}", rpc_timeout=1.0)
    with pytest.raises(ChainUnavailable):
        backend.check()


def test_public_namespace_matches_all() -> None:
    for module in (
        idlegrid,
        idlegrid.chain,
        idlegrid.protocol,
        idlegrid.store,
        idlegrid.workloads,
    ):
        public = {
            n
            for n, obj in vars(module).items()
            if not n.startswith("_") and not inspect.ismodule(obj) and n != "annotations"
        }
        assert public == set(module.__all__) - {"__version__"}, module.__name__
