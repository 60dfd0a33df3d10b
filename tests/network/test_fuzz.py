"""Fuzzing a live node: no request, however malformed, gets a 5xx, and the node keeps serving.

Schemathesis generates requests from the node's own OpenAPI document, valid and
invalid ones, and signs each the way a client would, so that they reach the
handlers instead of stopping at the signature check. A Hypothesis property test
then sends correctly signed job and voucher bodies whose fields hold random JSON.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok

from idlegrid.chain import TOKEN
from idlegrid.protocol import Account, Domain, npy_bytes, sign_request

from .conftest import (
    FUZZ_CLIENT,
    STRANGER,
    Digits,
    JobChannel,
    Network,
    Node,
    Serves,
    put_blob,
    send,
)

OPERATIONS = [
    ("GET", "/v1/health"),
    ("GET", "/v1/info"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/status"),
    ("PUT", "/v1/blobs/{digest}"),
    ("GET", "/v1/blobs/{digest}"),
    ("HEAD", "/v1/blobs/{digest}"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/vouchers"),
    ("POST", "/v1/channels/close"),
    ("POST", "/v1/disputes/evidence"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs/{run_id}/events"),
    ("POST", "/v1/runs/{run_id}/cancel"),
    ("POST", "/v1/oracle/answers"),  # devnet nodes answer the oracle (--oracle)
]
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class SignedAuth(requests.auth.AuthBase):
    """Signs each request as the node expects: method, decoded path, exact body bytes."""

    def __init__(self, account: Account, domain: Domain, recipient: str) -> None:
        self.account, self.domain, self.recipient = account, domain, recipient

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert isinstance(body, bytes), "a streamed body cannot be signed"
        url = urlsplit(r.url or "")
        path = unquote(url.path) + (f"?{url.query}" if url.query else "")
        signed = sign_request(self.account, self.domain, self.recipient, r.method or "", path, body)
        r.headers.update(signed.headers)
        return r


@pytest.fixture(scope="module")
def target(network: Network) -> Node:
    return network.nodes[1]


@pytest.fixture(scope="module")
def api(target: Node) -> schemathesis.BaseSchema:
    """The node's OpenAPI document, as schemathesis reads it from the live node."""
    return schemathesis.openapi.from_url(f"{target.url}/v1/openapi.json", timeout=10)


@pytest.fixture(scope="module")
def signed_session(network: Network, target: Node) -> Iterator[requests.Session]:
    """Requests signed by FUZZ_CLIENT (unsigned, nearly all would stop at a 401)."""
    with requests.Session() as session:
        session.auth = SignedAuth(network.account(FUZZ_CLIENT), network.domain, target.address)
        yield session


def refs(doc: Any) -> Iterator[str]:
    """Every "$ref" in a JSON document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from refs(value)


def test_openapi_lists_every_operation_and_resolves(
    network: Network, target: Node, api: schemathesis.BaseSchema
) -> None:
    # Prepare
    doc = network.http.get(f"{target.url}/v1/openapi.json").json()

    # Execute
    results = list(api.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]

    # Assert: every operation is there, and every body schema resolves (no dangling $ref)
    assert [result.err() for result in results if isinstance(result, Err)] == []
    assert sorted(op.label for op in operations) == sorted(f"{m} {p}" for m, p in OPERATIONS)
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# only the JSON bodies have a schema to break: any path string and any blob is valid input
# (a run's cancel has no body)
FUZZ_CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in ([POSITIVE, NEGATIVE] if method == "POST" and "{" not in path else [POSITIVE])
]


@pytest.mark.parametrize(
    ("method", "path", "mode"), FUZZ_CASES, ids=[f"{m} {p} {g.value}" for m, p, g in FUZZ_CASES]
)
def test_schemathesis_finds_no_server_error(
    api: schemathesis.BaseSchema,
    signed_session: requests.Session,
    target: Node,
    serves: Serves,
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    # Prepare
    operation = api[path][method]
    statuses: list[int] = []

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=target.url, session=signed_session, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    # Execute
    fuzz()

    # Assert
    assert statuses and max(statuses) < 500
    serves(target)


# -- signed bodies of random JSON -------------------------------------------------------------
def hex_of(size: int, prefix: str = "0x") -> st.SearchStrategy[str]:
    return st.binary(min_size=size, max_size=size).map(lambda b: prefix + b.hex())


@st.composite
def npy_b64(draw: st.DrawFn) -> str:
    """Base64 of an .npy array of any shape and dtype, the right one (float32 [N, 64]) too."""
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64", "int64", "uint8", "bool", "c8"])))
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 64, 65]), max_size=3)))
    values = [0, 1, 7] + ([float("nan"), float("inf"), -1e30] if dtype.kind in "fc" else [])
    array = np.full(shape, draw(st.sampled_from(values)), dtype)
    return base64.b64encode(npy_bytes(array)).decode()


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats()
    | st.text(max_size=40)
    | hex_of(32)
    | hex_of(32, prefix="")
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
UINT = st.integers(0, 2**256 - 1) | st.integers(0, 10**6)
ADDRESS = st.sampled_from(["<client>", "<provider>", "<other>", "<stranger>"]) | hex_of(20)
BLOB = st.sampled_from(["<model>", "<input>"]) | hex_of(32, prefix="")
# values of the right type (often of the right kind) for each field; "<name>"s are filled in
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "job_id": hex_of(32) | hex_of(31),
    "kind": st.sampled_from(["onnx", "embed", "train", "ONNX"]),
    "model": BLOB,
    "input_npy": npy_b64() | st.text(max_size=20),
    "input_blob": BLOB,
    "texts": st.lists(st.text(max_size=20), max_size=3),
    "seq": st.integers(-1, 2**48 + 1) | st.integers(1, 10),
    "unit_price": UINT | st.just("<price>"),
    "max_units": UINT,
    "client": ADDRESS,
    "provider": ADDRESS,
    "deposit": UINT,
    "expiry": UINT,
    "salt": UINT,
    "amount": UINT,
    "jobs": UINT,
    "units": UINT,
    "receipts_root": hex_of(32),
    "signature": hex_of(65),
}
JOB_FIELDS = [
    "job_id", "kind", "model", "input_npy", "input_blob", "texts", "channel", "seq",
    "unit_price", "max_units", "voucher",
]  # fmt: skip
NESTED = {
    "channel": ["client", "provider", "deposit", "expiry", "salt"],
    "voucher": ["amount", "jobs", "units", "receipts_root", "signature"],
}
Edit = tuple[str, str | None, str, Any]  # field, nested field or None, set | delete, value


@st.composite
def edits_of(draw: st.DrawFn, fields: list[str]) -> list[Edit]:
    """One to three edits of a valid body."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from([*fields, "unknown"]))
        nested = draw(st.sampled_from([None, *NESTED.get(field, [])]))
        action = draw(st.sampled_from(["set", "set", "delete"]))
        value = draw(PLAUSIBLE.get(nested or field, JSON) | JSON)
        edits.append((field, nested, action, value))
    return edits


def edited(body: dict[str, Any], edits: list[Edit], known: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    for field, nested, action, value in edits:
        target = body
        if nested is not None and isinstance(body.get(field), dict):
            target, field = body[field], nested
        if action == "delete":
            target.pop(field, None)
        else:
            target[field] = known.get(value, value) if isinstance(value, str) else value
    return body


@pytest.fixture(scope="module")
def fuzz_channel(network: Network, target: Node, digits: Digits) -> JobChannel:
    """A channel of FUZZ_CLIENT's to the target, with jobs delivered and a voucher signed."""
    client = network.account(FUZZ_CLIENT)
    put_blob(network, target, digits.model, account=client)
    channel = JobChannel(network, target, client, digits, deposit=TOKEN)
    for _ in range(3):
        channel.run()
    return channel


@pytest.fixture(scope="module")
def known(network: Network, target: Node, fuzz_channel: JobChannel) -> dict[str, Any]:
    """What the "<name>" placeholders of generated values stand for."""
    client = fuzz_channel.client
    rows = npy_bytes(fuzz_channel.digits.x_test[:3])
    return {
        "<model>": fuzz_channel.digits.digest,
        "<input>": put_blob(network, target, rows, account=client),
        "<client>": client.address,
        "<provider>": target.address,
        "<other>": network.nodes[0].address,
        "<stranger>": network.account(STRANGER).address,
        "<price>": fuzz_channel.price,
    }


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/vouchers"])
def test_signed_bodies_of_random_json_get_no_server_error(
    network: Network,
    target: Node,
    fuzz_channel: JobChannel,
    known: dict[str, Any],
    serves: Serves,
    route: str,
) -> None:
    # Prepare
    statuses: list[int] = []

    def valid() -> dict[str, Any]:
        body = fuzz_channel.request(job_id="0x" + os.urandom(32).hex())
        if route == "/v1/vouchers":
            return {"channel": body["channel"], "voucher": body["voucher"]}
        return body

    @settings(FUZZ, max_examples=100)
    @given(edits=edits_of(JOB_FIELDS if route == "/v1/jobs" else list(NESTED)))
    def fuzz(edits: list[Edit]) -> None:
        raw = json.dumps(edited(valid(), edits, known)).encode()
        sent = send(network, target, "POST", route, raw, account=fuzz_channel.client)
        statuses.append(sent.status)
        assert sent.status < 500, sent.response.text
        if sent.status >= 400:
            assert sent.error and sent.reason

    # Execute
    fuzz()

    # Assert
    assert statuses and max(statuses) < 500
    serves(target)
