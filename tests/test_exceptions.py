"""The exception tree: one root, documented, and foreign errors translated."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

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
import idlegrid.client
import idlegrid.executor
import idlegrid.provider
import idlegrid.store
import idlegrid.workloads
from idlegrid import (
    HTTP_STATUS,
    ChainTimeout,
    ChainUnavailable,
    ContractReverted,
    IdlegridError,
    PaymentRequired,
    PeerError,
    error_for_status,
    status_of,
)
from idlegrid.chain import RpcBackend, free_port
from idlegrid.chain._errors import revert_reason, translate


def _package_errors() -> set[type[IdlegridError]]:
    """Every public IdlegridError subclass that a module of the package defines."""
    for info in pkgutil.walk_packages(idlegrid.__path__, "idlegrid."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:  # an optional extra (ray) that is not installed
            assert not (exc.name or "").startswith("idlegrid"), exc
    found: set[type[IdlegridError]] = set()
    todo = [IdlegridError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("idlegrid") and not cls.__name__.startswith("_"):
            found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def _tree() -> dict[str, str]:
    """Each class in the docstring tree of ``_exceptions.py``, mapped to its parent there."""
    parents: dict[str, str] = {}
    stack: list[str] = []
    for line in (idlegrid._exceptions.__doc__ or "").splitlines():
        m = re.match(r"([ │├└─]*)([A-Z]\w+)(  |$)", line)
        if m is None or not line.startswith("    "):
            continue
        depth = (len(m.group(1)) - 4) // 4  # the root sits at column 4, each level 4 more
        del stack[depth:]
        parents[m.group(2)] = stack[-1] if stack else ""
        stack.append(m.group(2))
    return parents


def test_every_error_of_the_package_is_in_the_tree_and_exported() -> None:
    errors = _package_errors()
    tree = _tree()
    for cls in errors:
        name = cls.__name__
        assert cls.__module__ == "idlegrid._exceptions", f"{name} lives outside _exceptions.py"
        assert cls.__doc__, name
        assert name in idlegrid._exceptions.__all__, name
        assert getattr(idlegrid, name) is cls, f"{name} is not exported by idlegrid"
        parent = cls.__bases__[0].__name__ if cls is not IdlegridError else ""
        assert tree.get(name) == parent, f"{name} sits under {tree.get(name)!r}, not {parent!r}"
    assert set(tree) == {cls.__name__ for cls in errors}


def test_the_status_table_round_trips() -> None:
    for cls, status in HTTP_STATUS:
        assert status_of(cls) == status, f"{cls.__name__} is shadowed by an earlier row"
        back = error_for_status(status)
        assert back is not None and issubclass(cls, back)
        assert status_of(back) == status
    assert status_of(PaymentRequired("top up")) == 402
    assert status_of(ValueError("not ours")) == 500
    assert error_for_status(200) is None


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
        idlegrid.client,
        idlegrid.executor,
        idlegrid.protocol,
        idlegrid.provider,
        idlegrid.store,
        idlegrid.workloads,
    ):
        public = {
            n
            for n, obj in vars(module).items()
            if not n.startswith("_") and not inspect.ismodule(obj) and n != "annotations"
        }
        exported = set(module.__all__) - {"__version__"}
        assert public <= exported, module.__name__
        # what is exported but not yet loaded is loaded when first asked for
        for name in exported - public:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
        assert exported - public <= {"RpcServer", "serve"}, module.__name__


def test_a_node_loads_no_embedded_chain() -> None:
    # a node and a command on a real chain: eth-tester and py-evm are the embedded
    # chain's (its JSON-RPC server is loaded when first asked for)
    script = (
        "import sys, idlegrid.provider, idlegrid.chain; "
        "print(sorted(m for m in ('eth_tester', 'eth') if m in sys.modules)); "
        "idlegrid.chain.RpcServer; print('eth_tester' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]


def test_the_executor_package_imports_no_heavy_library() -> None:
    # every worker imports it when it starts
    heavy = ("web3", "eth_tester", "vyper", "fastapi", "starlette", "uvicorn")
    script = (
        f"import sys, idlegrid.executor; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
