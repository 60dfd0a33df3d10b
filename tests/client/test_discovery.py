"""Probing a node: its /v1/info read as the node's own NodeInfo, through the transport."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from idlegrid.client import Response, Transport
from idlegrid.client._discovery import _probe
from idlegrid.protocol import NodeInfo

ADDRESS = "0x" + "22" * 20
MARKET = "0x" + "42" * 20
LEDGER: Any = SimpleNamespace(
    backend=SimpleNamespace(chain_id=31337), market=SimpleNamespace(address=MARKET)
)


class Node(Transport):
    """Answers /v1/info with ``info`` and /v1/health with 200."""

    def __init__(self, info: bytes) -> None:
        self.info = info
        self.paths: list[str] = []

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        timeout: float,
    ) -> Response:
        self.paths.append(url.removeprefix("http://node.test"))
        body = self.info if url.endswith("/v1/info") else b'{"ok": true}'
        return Response(200, {}, body)

    async def aclose(self) -> None:
        pass


def _info(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "address": ADDRESS,
        "chain_id": 31337,
        "market": MARKET,
        "unit_price": 5,
        "workloads": ["onnx", "embed"],
        "hardware": {},
        "capabilities_hash": "0x" + "00" * 32,
        "limits": {"credit_jobs": 16, "max_request_bytes": 1000, "metered": 1},
        "version": "test",
    }
    fields.update(changes)
    return NodeInfo(**fields).model_dump_json().encode()


def test_a_node_s_info_gives_its_workloads_credit_and_limits() -> None:
    # Prepare
    node = Node(_info())

    # Execute
    probed = asyncio.run(_probe(node, "http://node.test/", ADDRESS, LEDGER, 1.0))

    # Assert
    assert probed is not None
    _, workloads, credit, limits = probed
    assert (workloads, credit) == (("onnx", "embed"), 16)
    assert (limits.max_request_bytes, limits.metered) == (1000, True)
    assert node.paths == ["/v1/info"] + ["/v1/health"] * 3


@pytest.mark.parametrize(
    "info",
    [
        pytest.param(_info(address="0x" + "33" * 20), id="another identity"),
        pytest.param(_info(chain_id=1), id="another chain"),
        pytest.param(_info(limits={"credit_jobs": 0}), id="no credit"),
        pytest.param(_info(limits={"max_request_bytes": -1}), id="a negative limit"),
        pytest.param(_info()[:-20], id="cut short"),
        pytest.param(b'{"address": "' + ADDRESS.encode() + b'"}', id="not a NodeInfo"),
    ],
)
def test_a_node_whose_info_does_not_check_out_is_left_out(info: bytes) -> None:
    # Execute
    probed = asyncio.run(_probe(Node(info), "http://node.test", ADDRESS, LEDGER, 1.0))

    # Assert
    assert probed is None
