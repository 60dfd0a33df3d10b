"""The embedded EVM served over JSON-RPC (``python -m idlegrid.chain._rpcserver``), used by
standard tools: idlegrid's RpcBackend, plain web3.py with a hand-written ERC-20 ABI, and
foundry's ``cast``. One server process for the module, stopped even when a test fails."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from eth_account import Account as EthAccount
from web3 import Web3

from idlegrid import ContractReverted
from idlegrid.chain import TOKEN, Ledger, RpcBackend, dev_accounts, free_port, wait_for_rpc

ACCOUNTS = 5
TIMEOUT = 30.0
CAST = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "cast"


def _function(name: str, inputs: list[str], outputs: list[str], mutability: str) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "stateMutability": mutability,
        "inputs": [{"name": f"arg{i}", "type": t} for i, t in enumerate(inputs)],
        "outputs": [{"name": "", "type": t} for t in outputs],
    }


# a minimal ERC-20 ABI, written by hand: nothing from idlegrid's compiled artifacts
ERC20_ABI: list[dict[str, Any]] = [
    _function("balanceOf", ["address"], ["uint256"], "view"),
    _function("decimals", [], ["uint8"], "view"),
    _function("symbol", [], ["string"], "view"),
    _function("transfer", ["address", "uint256"], ["bool"], "nonpayable"),
    {
        "type": "event",
        "name": "Transfer",
        "anonymous": False,
        "inputs": [
            {"name": "sender", "type": "address", "indexed": True},
            {"name": "receiver", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
]


def start_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "idlegrid.chain._rpcserver", "--port", str(port),
         "--accounts", str(ACCOUNTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_rpc(f"http://127.0.0.1:{port}", timeout=TIMEOUT, proc=proc)
    except BaseException:
        stop_server(proc)
        raise
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    """SIGTERM, then SIGKILL; the exit status and output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = free_port()
    proc = start_server(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def ledger(url: str) -> Ledger:
    backend = RpcBackend(url, dev_account_count=ACCOUNTS)
    owner, *users = backend.dev_accounts()
    ledger = Ledger.deploy(backend, owner)
    for user in users:
        ledger.token.mint(user.address, 1_000 * TOKEN, sender=owner)
    return ledger


def rpc(url: str, payload: Any) -> Any:
    response = requests.post(url, json=payload, timeout=TIMEOUT)
    assert response.status_code == 200
    return response.json()


def call(url: str, method: str, *params: Any) -> dict[str, Any]:
    request = {"jsonrpc": "2.0", "id": 7, "method": method, "params": list(params)}
    reply: dict[str, Any] = rpc(url, request)
    assert reply["id"] == 7
    return reply


def run_cast(*args: str) -> str:
    if not CAST.is_file():
        pytest.fail(f"cast is not installed at {CAST}: run `npm install` in the repository root")
    done = subprocess.run(
        [str(CAST), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- idlegrid's own backend ---------------------------------------------------------------------
def test_rpc_backend_deploys_the_ledger_and_transfers(url: str, ledger: Ledger) -> None:
    # Prepare
    owner, alice, bob = dev_accounts(3)
    before = ledger.token.balance_of(bob.address)

    # Execute
    result = ledger.token.transfer(bob.address, 5 * TOKEN, sender=alice)

    # Assert
    assert result.block == ledger.backend.block_number()
    assert ledger.token.balance_of(bob.address) == before + 5 * TOKEN
    assert ledger.token.owner() == owner.address
    assert ledger.registry.market() == ledger.market.address
    assert ledger.backend.chain_id == int(call(url, "eth_chainId")["result"], 16)


class _Counting(BaseHTTPRequestHandler):
    """A JSON-RPC relay to ``upstream`` that records the method of every request."""

    upstream: ClassVar[str] = ""
    methods: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        parsed = json.loads(body)
        for request in parsed if isinstance(parsed, list) else [parsed]:
            self.methods.append(request["method"])
        reply = requests.post(
            self.upstream, data=body, headers={"content-type": "application/json"},
            timeout=TIMEOUT,
        )  # fmt: skip
        self.send_response(reply.status_code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    def log_message(self, *args: Any) -> None:
        pass


def test_rpc_backend_asks_the_chain_id_once_not_before_every_call(url: str, ledger: Ledger) -> None:
    """web3's validation middleware needs the chain id for every call, estimate and
    transaction; the backend asks the endpoint once (per thread) and keeps the answer."""

    # Prepare: a backend that reaches the chain through a relay that counts requests
    class Handler(_Counting):
        upstream = url
        methods: ClassVar[list[str]] = []

    relay = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=relay.serve_forever, daemon=True)
    serving.start()
    try:
        backend = RpcBackend(f"http://127.0.0.1:{relay.server_address[1]}")
        seen = Ledger(backend, ledger.deployment)
        _, alice, bob = dev_accounts(3)

        # Execute: reads and a transaction
        for _ in range(5):
            seen.token.balance_of(bob.address)
        seen.token.transfer(bob.address, TOKEN, sender=alice)
        seen.token.balance_of(bob.address)
    finally:
        relay.shutdown()
        relay.server_close()

    # Assert
    methods = Handler.methods
    assert methods.count("eth_call") >= 6 and "eth_sendRawTransaction" in methods
    assert methods.count("eth_chainId") == 1, methods


def test_rpc_backend_reports_the_contracts_revert_reason(ledger: Ledger) -> None:
    _, alice, bob = dev_accounts(3)
    too_much = ledger.token.balance_of(alice.address) + 1

    with pytest.raises(ContractReverted) as info:
        ledger.token.transfer(bob.address, too_much, sender=alice)

    assert info.value.reason == "token: transfer amount exceeds balance"


def test_snapshot_revert_and_advance_time(ledger: Ledger) -> None:
    # Prepare
    backend = ledger.backend
    _, alice, bob = dev_accounts(3)
    snapshot = backend.snapshot()
    start_time, start_block = backend.timestamp(), backend.block_number()
    before = ledger.token.balance_of(bob.address)

    # Execute
    backend.advance_time(3600)
    moved_time = backend.timestamp()
    ledger.token.transfer(bob.address, TOKEN, sender=alice)
    backend.revert(snapshot)

    # Assert
    assert moved_time >= start_time + 3600
    assert backend.block_number() == start_block
    assert backend.timestamp() == start_time
    assert ledger.token.balance_of(bob.address) == before


# -- plain web3.py ------------------------------------------------------------------------------
def test_web3_reads_and_transfers_with_a_plain_erc20_abi(url: str, ledger: Ledger) -> None:
    # Prepare
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": TIMEOUT}))
    token = w3.eth.contract(address=Web3.to_checksum_address(ledger.token.address), abi=ERC20_ABI)
    _, _, alice, bob = dev_accounts(4)
    sender = EthAccount.from_key(alice.key)
    before = token.functions.balanceOf(bob.address).call()
    tx = token.functions.transfer(bob.address, 3 * TOKEN).build_transaction(
        {"from": sender.address, "nonce": w3.eth.get_transaction_count(sender.address, "pending")}
    )

    # Execute
    tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=TIMEOUT)

    # Assert
    assert token.functions.symbol().call() == "IDLE"
    assert token.functions.decimals().call() == 18
    assert receipt["status"] == 1
    assert token.functions.balanceOf(bob.address).call() == before + 3 * TOKEN
    assert w3.eth.get_transaction(tx_hash)["from"] == sender.address
    [event] = token.events.Transfer().get_logs(from_block=receipt["blockNumber"])
    assert event["args"]["receiver"] == bob.address
    assert event["args"]["value"] == 3 * TOKEN
    assert w3.eth.get_block(receipt["blockNumber"])["transactions"] == [tx_hash]


# -- foundry's cast -------------------------------------------------------------------------------
def test_cast_reads_the_chain_and_sends_a_transfer(url: str, ledger: Ledger) -> None:
    # Prepare
    _, _, _, alice, bob = dev_accounts(5)
    signature = "balanceOf(address)(uint256)"
    before = ledger.token.balance_of(bob.address)

    # Execute
    chain_id = run_cast("chain-id", "--rpc-url", url)
    block = run_cast("block-number", "--rpc-url", url)
    balance = run_cast("call", ledger.token.address, signature, alice.address, "--rpc-url", url)
    run_cast(
        "send", "--private-key", alice.key_hex, "--rpc-url", url, "--timeout", "60",
        ledger.token.address, "transfer(address,uint256)", bob.address, str(2 * TOKEN),
    )  # fmt: skip
    ether = run_cast("balance", bob.address, "--rpc-url", url)

    # Assert
    assert int(chain_id) == ledger.backend.chain_id
    assert int(block) >= 1
    assert int(balance.split()[0]) == ledger.token.balance_of(alice.address) + 2 * TOKEN
    assert ledger.token.balance_of(bob.address) == before + 2 * TOKEN
    assert int(ether) == ledger.backend.eth_balance(bob.address) > 0


# -- the JSON-RPC protocol ------------------------------------------------------------------------
def test_a_revert_is_error_code_3_with_reason_and_data(url: str, ledger: Ledger) -> None:
    _, alice, bob = dev_accounts(3)
    too_much = ledger.token.balance_of(alice.address) + 1
    data = Web3().eth.contract(abi=ERC20_ABI).encode_abi("transfer", args=[bob.address, too_much])
    tx = {"from": alice.address, "to": ledger.token.address, "data": data}

    for method in ("eth_call", "eth_estimateGas"):
        error = call(url, method, tx, "latest")["error"]

        assert error["code"] == 3
        assert error["message"] == "execution reverted: token: transfer amount exceeds balance"
        assert error["data"].startswith("0x08c379a0")  # Error(string)


def test_batch_requests_are_answered_in_one_reply(url: str) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": "two", "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "no_such_method", "params": []},
        {"jsonrpc": "2.0", "method": "eth_chainId", "params": []},  # a notification
    ]

    replies = {reply["id"]: reply for reply in rpc(url, batch)}

    assert set(replies) == {1, "two", 3}
    assert replies[1]["result"] == call(url, "eth_chainId")["result"]
    assert int(replies["two"]["result"], 16) >= 0
    assert replies[3]["error"]["code"] == -32601


def test_protocol_errors_leave_the_server_serving(url: str) -> None:
    unknown = call(url, "eth_noSuchMethod")
    malformed = requests.post(url, data=b'{"jsonrpc": "2.0", "id": 1,', timeout=TIMEOUT).json()
    bad_params = call(url, "eth_getBalance", "not an address", "latest")
    empty_batch = rpc(url, [])

    assert unknown["error"]["code"] == -32601
    assert malformed["id"] is None
    assert malformed["error"] == {"code": -32700, "message": "Parse error"}
    assert bad_params["error"]["code"] == -32602
    assert empty_batch["error"]["code"] == -32600
    assert call(url, "eth_chainId")["result"].startswith("0x")


def test_wire_format_is_a_real_nodes(url: str, ledger: Ledger) -> None:
    _, alice, bob = dev_accounts(3)
    result = ledger.token.transfer(bob.address, 1, sender=alice)

    receipt = call(url, "eth_getTransactionReceipt", result.tx_hash)["result"]
    block = call(url, "eth_getBlockByNumber", hex(result.block), False)["result"]
    history = call(url, "eth_feeHistory", "0x2", "latest", [50])["result"]

    assert receipt["status"] == "0x1"
    assert receipt["blockNumber"] == hex(result.block)
    assert receipt["from"] == alice.address.lower()
    assert receipt["logs"][0]["removed"] is False
    assert receipt["logsBloom"] == block["logsBloom"]  # one transaction in the block
    assert block["transactions"] == [result.tx_hash]
    assert block["miner"].startswith("0x") and "coinbase" not in block
    assert history["oldestBlock"] == hex(result.block - 1)
    assert len(history["baseFeePerGas"]) == 3 and len(history["reward"]) == 2
    assert call(url, "eth_getTransactionReceipt", "0x" + "11" * 32)["result"] is None
    assert call(url, "net_version")["result"] == str(ledger.backend.chain_id)


def test_sigterm_stops_the_server_cleanly() -> None:
    proc = start_server(free_port())

    status, out, err = stop_server(proc)

    assert status == 0
    assert out.decode().startswith("idlegrid embedded chain on http://127.0.0.1:")
    assert err == b""
