"""Adding a kind of job is one new file: ``_sum_kind.py``, registered here, runs end to
end through the node's and the client's generic code (an in-process node on the
embedded EVM, its HTTP app reached through the client's transport interface)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from idlegrid import InvalidInput
from idlegrid.chain import TOKEN, EmbeddedBackend, Ledger, LedgerConfig
from idlegrid.client import (
    Candidate,
    ClientChannel,
    ProviderFailed,
    ProviderSession,
    Response,
    Transport,
)
from idlegrid.protocol import JobRequest, NodeInfo, node_domain
from idlegrid.provider import NodeConfig, build_node, create_app
from idlegrid.provider._node import tasks
from idlegrid.workloads import get_workload, register, unregister, workloads

from ._sum_kind import SumWorkload, WrongShapeSum

PRICE = 7
ROWS = np.arange(12, dtype=np.float64).reshape(4, 3)


@pytest.fixture
def sum_kind() -> Iterator[SumWorkload]:
    kind = SumWorkload()
    register(kind)
    try:
        yield kind
    finally:
        unregister(kind.name)


class AppTransport(Transport):
    """The client's transport, into a node's ASGI app in this process."""

    def __init__(self, app: Any) -> None:
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        timeout: float,
    ) -> Response:
        resp = await self._http.request(method, url, headers=headers, content=content)
        return Response(resp.status_code, dict(resp.headers), resp.content)

    async def aclose(self) -> None:
        await self._http.aclose()


class NoBlobs:
    """The client's side of planning a batch that names no blob."""

    def __init__(self) -> None:
        self.memo: dict[Any, Any] = {}

    async def fetch_blob(self, digest: str) -> bytes:
        raise AssertionError("a sum job names no blob")


def _run_on_a_node(tmp_path: Path, rows: np.ndarray) -> tuple[np.ndarray, NodeInfo]:
    """Deploy, start a node serving ``sum`` only, open a channel, run ``rows`` through
    ``ProviderSession.run`` with the kind's plan; the output and the node's /v1/info."""
    backend = EmbeddedBackend(accounts=3)
    owner, provider, client = backend.dev_accounts()[:3]
    ledger = Ledger.deploy(backend, owner, LedgerConfig(min_stake=TOKEN))
    ledger.token.mint(client.address, 100 * TOKEN, sender=owner)
    ledger.token.approve(ledger.market.address, 100 * TOKEN, sender=client)
    config = NodeConfig(data_dir=tmp_path / "node", unit_price=PRICE, workloads=("sum",), workers=1)
    node = build_node(provider, ledger, config)
    terms, _ = ledger.market.open_channel(
        provider.address, 10 * TOKEN, backend.next_timestamp() + 3600, sender=client
    )
    channel = ClientChannel(terms, deposit=terms.deposit, expiry=terms.expiry)
    kind = get_workload("sum")

    async def body() -> tuple[np.ndarray, NodeInfo]:
        await node.executor.start()
        transport = AppTransport(create_app(node))
        candidate = Candidate(provider.address, "http://node.test", PRICE, latency_ms=1.0)
        domain = node_domain(backend.chain_id, ledger.market.address)
        session = ProviderSession(
            client, candidate, domain, ledger.market.domain(), transport, timeout_s=10.0
        )

        async def reserve(amount: int) -> ClientChannel:
            channel.committed += amount
            return channel

        try:
            plan = await kind.plan(rows, NoBlobs())
            out = await session.run(reserve, plan, rows)
            info = await transport.request("GET", "http://node.test/v1/info", timeout=5.0)
            return out, NodeInfo.model_validate_json(info.content)
        finally:
            await transport.aclose()
            await node.executor.close()
            node.models.close()

    return asyncio.run(body())


def test_a_registered_kind_is_listed_served_and_its_task_allowed(sum_kind: SumWorkload) -> None:
    # Execute
    names = [w.name for w in workloads()]
    allowed = tasks(["onnx", "sum"])
    config = NodeConfig(data_dir=Path("unused"), workloads=("sum",))

    # Assert
    assert "sum" in names and get_workload("sum") is sum_kind
    assert allowed == (get_workload("onnx").task, "tests.workloads._sum_kind:run")
    assert config.workloads == ("sum",)


def test_an_unregistered_kind_is_refused_by_the_node_config() -> None:
    with pytest.raises(InvalidInput, match="no workload of kind 'sum'"):
        NodeConfig(data_dir=Path("unused"), workloads=("sum",))


def test_the_job_request_carries_a_kind_s_fields_and_the_kind_parses_them(
    sum_kind: SumWorkload,
) -> None:
    # Prepare
    body = {
        "job_id": "0x" + "11" * 32,
        "kind": "sum",
        "values": [[1.0, 2.0]],
        "channel": {
            "client": "0x" + "22" * 20,
            "provider": "0x" + "33" * 20,
            "deposit": 1,
            "expiry": 2,
            "salt": 3,
        },
        "seq": 1,
        "unit_price": 1,
        "max_units": 2,
    }

    # Execute
    req = JobRequest.model_validate(body)
    spec = sum_kind.parse(req.spec_fields())

    # Assert
    assert spec.values == [[1.0, 2.0]] and sum_kind.units(spec) == 2
    with pytest.raises(InvalidInput, match="script"):
        sum_kind.parse({**req.spec_fields(), "script": "rm -rf /"})


def test_a_new_kind_runs_end_to_end_through_the_generic_node_and_client(
    sum_kind: SumWorkload, tmp_path: Path
) -> None:
    # Execute
    out, info = _run_on_a_node(tmp_path, ROWS)

    # Assert
    np.testing.assert_array_equal(out, ROWS.sum(axis=1))
    assert sum_kind.close_enough(out, ROWS.sum(axis=1))
    assert info.workloads == ["sum"] and info.specs == {"sum": sum_kind.schema()}


def test_the_client_checks_a_new_kind_s_result_before_it_pays(
    sum_kind: SumWorkload, tmp_path: Path
) -> None:
    # Prepare: the node's worker returns [N, 1] where the kind declares [N]
    register(WrongShapeSum(), replace=True)

    # Execute / Assert
    with pytest.raises(ProviderFailed, match=r"does not check out: output shape \(4, 1\)"):
        _run_on_a_node(tmp_path, ROWS)
