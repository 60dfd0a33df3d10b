"""Every way a request can be wrong gets a clear error, and the node keeps serving.

Each test sends one bad request to a live node, checks the status code and the
``{"error": <class>, "reason": <text>}`` body (signed by the node when the request
was validly signed), then runs a good job on the same node.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from idlegrid.chain import TOKEN
from idlegrid.protocol import (
    MARKET_DOMAIN_NAME,
    Domain,
    JobResult,
    Voucher,
    VoucherModel,
    node_domain,
    npy_bytes,
    sign_voucher,
    verify_response,
)
from idlegrid.protocol._envelope import H_EXPIRY, H_NONCE, H_SENDER, H_SIGNATURE

from .conftest import (
    JOB_CLIENT,
    STRANGER,
    Digits,
    JobChannel,
    Network,
    Node,
    Sent,
    Serves,
    put_blob,
    send,
)


def refused(net: Network, node: Node, sent: Sent, status: int, error: str, says: str) -> None:
    """Assert a clear refusal: the status, the error class and a reason naming the problem."""
    assert sent.status == status, f"HTTP {sent.status}: {sent.response.text}"
    assert sent.response.headers["content-type"].startswith("application/json")
    assert sent.error == error, sent.response.text
    assert says.lower() in sent.reason.lower(), sent.reason
    if sent.signed is not None and status not in (401, 413):
        # a request that passed the signature check gets a signed answer, errors too
        verify_response(
            net.domain,
            node.address,
            sent.signed.headers[H_SENDER],
            sent.signed.digest,
            sent.status,
            sent.response.content,
            sent.response.headers,
        )


def npy_b64(array: np.ndarray) -> str:
    return base64.b64encode(npy_bytes(array)).decode()


def object_npy_b64() -> str:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def node(network: Network) -> Node:
    return network.nodes[0]


@pytest.fixture
def max_request_bytes(network: Network, node: Node) -> int:
    """The node's limit on a request body, as it tells anyone who asks."""
    return int(network.http.get(f"{node.url}/v1/info").json()["limits"]["max_request_bytes"])


@pytest.fixture
def jc(job_channels: dict[int, JobChannel], node: Node, serves: Serves) -> JobChannel:
    """The known-good channel to ``node``, with at least one job delivered on it."""
    serves(node)
    return job_channels[node.index]


# -- 400: malformed job specs -------------------------------------------------------------
SPEC_CASES: list[tuple[str, Callable[[JobChannel], dict[str, Any] | bytes], str, str]] = [
    ("not json", lambda jc: b"{not json", "InvalidInput", "json"),
    ("a json list", lambda jc: b"[1, 2, 3]", "InvalidInput", "object"),
    ("empty body", lambda jc: b"", "InvalidInput", "json"),
    ("missing channel", lambda jc: _without(jc.request(), "channel"), "InvalidInput", "channel"),
    ("unknown field", lambda jc: jc.request(script="rm -rf /"), "InvalidInput", "script"),
    ("unknown kind", lambda jc: jc.request(kind="train"), "InvalidInput", "kind"),
    ("kind not served", lambda jc: jc.request(kind="embed", texts=["hi"]), "InvalidInput", "embed"),
    ("no model", lambda jc: jc.request(model=None), "InvalidInput", "model"),
    ("no input", lambda jc: jc.request(input_npy=None), "InvalidInput", "exactly one"),
    (
        "two inputs",
        lambda jc: jc.request(input_blob=jc.digits.digest),
        "InvalidInput",
        "exactly one",
    ),
    ("input not base64", lambda jc: jc.request(input_npy="***"), "InvalidInput", "base64"),
    (
        "input not npy",
        lambda jc: jc.request(input_npy=base64.b64encode(b"hello").decode()),
        "InvalidInput",
        "npy",
    ),
    ("input of objects", lambda jc: jc.request(input_npy=object_npy_b64()), "InvalidInput", "npy"),
    (
        "input of no rows",
        lambda jc: jc.request(input_npy=npy_b64(np.zeros((0, 64), np.float32))),
        "InvalidInput",
        "row",
    ),
    (
        "input of a scalar",
        lambda jc: jc.request(input_npy=npy_b64(np.array(1.0, np.float32))),
        "InvalidInput",
        "rank",
    ),
    (
        "input of the wrong width",
        lambda jc: jc.request(input_npy=npy_b64(np.zeros((2, 3), np.float32))),
        "InvalidInput",
        "expects [n, 64]",
    ),
    (
        "input of the wrong dtype",
        lambda jc: jc.request(input_npy=npy_b64(np.zeros((2, 64), np.complex64))),
        "InvalidInput",
        "expects float32",
    ),
    ("seq zero", lambda jc: jc.request(seq=0), "InvalidInput", "seq"),
    ("seq a string", lambda jc: jc.request(seq="one"), "InvalidInput", "seq"),
    ("negative price", lambda jc: jc.request(unit_price=-1), "InvalidInput", "unit_price"),
    ("max_units too small", lambda jc: jc.request(max_units=1), "InvalidInput", "max_units"),
    ("channel of bad addresses", lambda jc: _bad_channel(jc), "InvalidInput", "client"),
]


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def _bad_channel(jc: JobChannel) -> dict[str, Any]:
    return jc.request(channel={**jc.channel.terms_json(), "client": "0x1234"})


@pytest.mark.parametrize(
    ("make", "error", "says"),
    [case[1:] for case in SPEC_CASES],
    ids=[case[0] for case in SPEC_CASES],
)
def test_malformed_job_spec_is_400(
    network: Network,
    node: Node,
    jc: JobChannel,
    serves: Serves,
    make: Callable[[JobChannel], dict[str, Any] | bytes],
    error: str,
    says: str,
) -> None:
    # Prepare
    made = make(jc)
    body = made if isinstance(made, bytes) else json.dumps(made).encode()

    # Execute
    sent = send(network, node, "POST", "/v1/jobs", body, account=jc.client)

    # Assert
    refused(network, node, sent, 400, error, says)
    serves(node)


def test_model_that_is_not_onnx_is_400(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare: a stored blob that is not an ONNX model, named as the model
    junk = put_blob(network, node, b"not an onnx model " + os.urandom(8), account=jc.client)

    # Execute
    sent = jc.submit(jc.request(model=junk))

    # Assert
    refused(network, node, sent, 400, "InvalidInput", "onnx")
    serves(node)


def test_wrong_price_is_400(network: Network, node: Node, jc: JobChannel, serves: Serves) -> None:
    # Execute
    sent = jc.submit(jc.request(unit_price=jc.price + 1))

    # Assert
    refused(network, node, sent, 400, "InvalidInput", "price mismatch")
    serves(node)


# -- 400: wrong hashes -----------------------------------------------------------------
def test_blob_whose_hash_differs_is_400(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare
    data = b"some bytes"
    other = hashlib.sha256(b"other bytes").hexdigest()

    # Execute
    sent = send(
        network, node, "PUT", f"/v1/blobs/{other}", data, account=jc.client,
        content_type="application/octet-stream",
    )  # fmt: skip

    # Assert
    refused(network, node, sent, 400, "InvalidInput", "sha256")
    serves(node)


@pytest.mark.parametrize("digest", ["xyz", "A" * 64, "0" * 63, "0x" + "0" * 64])
@pytest.mark.parametrize("method", ["PUT", "GET"])
def test_malformed_blob_digest_is_400(
    network: Network, node: Node, jc: JobChannel, serves: Serves, method: str, digest: str
) -> None:
    # Execute
    body = b"data" if method == "PUT" else b""
    sent = send(network, node, method, f"/v1/blobs/{digest}", body, account=jc.client)
    head = network.http.head(f"{node.url}/v1/blobs/{digest}")

    # Assert
    refused(network, node, sent, 400, "InvalidInput", "not a sha256 digest")
    assert head.status_code == 400
    serves(node)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job_id", "0x1234"),
        ("job_id", "0x" + "g" * 64),
        ("model", "0" * 63),
        ("model", "A" * 64),
        ("input_blob", "sha256:" + "0" * 64),
    ],
)
def test_malformed_hash_in_job_is_400(
    network: Network, node: Node, jc: JobChannel, serves: Serves, field: str, value: str
) -> None:
    # Prepare
    body = jc.request(**{field: value})
    if field == "input_blob":
        body["input_npy"] = None

    # Execute
    sent = jc.submit(body)

    # Assert
    refused(network, node, sent, 400, "InvalidInput", field)
    serves(node)


# -- 413: oversized payloads -------------------------------------------------------------
@pytest.mark.parametrize("signed", [True, False])
def test_oversized_blob_is_413(
    network: Network,
    node: Node,
    jc: JobChannel,
    serves: Serves,
    max_request_bytes: int,
    signed: bool,
) -> None:
    # Prepare
    data = os.urandom(max_request_bytes + 1)
    digest = hashlib.sha256(data).hexdigest()

    # Execute
    sent = send(
        network, node, "PUT", f"/v1/blobs/{digest}", data,
        account=jc.client if signed else None, content_type="application/octet-stream",
    )  # fmt: skip

    # Assert
    refused(network, node, sent, 413, "PayloadTooLarge", "larger than")
    serves(node)


def test_oversized_job_is_413(
    network: Network, node: Node, jc: JobChannel, serves: Serves, max_request_bytes: int
) -> None:
    # Prepare: an inline input over the request limit
    rows = np.zeros((max_request_bytes // (64 * 4) + 1, 64), np.float32)
    body = jc.request(input_npy=npy_b64(rows))

    # Execute
    sent = jc.submit(body)

    # Assert
    refused(network, node, sent, 413, "PayloadTooLarge", "larger than")
    serves(node)


# -- 401: unsigned, expired, replayed, badly signed ------------------------------------------
def test_unsigned_requests_are_401(
    network: Network, node: Node, jc: JobChannel, serves: Serves, digits: Digits
) -> None:
    # Prepare
    job = json.dumps(jc.request()).encode()
    voucher = json.dumps({"channel": jc.channel.terms_json(), "voucher": _voucher(jc)}).encode()
    calls = [
        ("POST", "/v1/jobs", job),
        ("POST", "/v1/vouchers", voucher),
        ("PUT", f"/v1/blobs/{digits.digest}", digits.model),
        ("GET", f"/v1/blobs/{digits.digest}", b""),
    ]

    for method, path, body in calls:
        # Execute
        sent = send(network, node, method, path, body, account=None)

        # Assert
        refused(network, node, sent, 401, "BadSignature", "unsigned")
    serves(node)


def _voucher(jc: JobChannel) -> dict[str, Any]:
    model = jc.channel.voucher_model()
    assert model is not None
    return model.model_dump()


def test_expired_request_is_401(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Execute: signed ten minutes ago, valid for a minute
    sent = send(
        network, node, "POST", "/v1/jobs", json.dumps(jc.request()).encode(),
        account=jc.client, now=time.time() - 600,
    )  # fmt: skip

    # Assert
    refused(network, node, sent, 401, "BadSignature", "expired")
    serves(node)


def test_request_valid_for_too_long_is_401(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Execute
    sent = send(
        network, node, "POST", "/v1/jobs", json.dumps(jc.request()).encode(),
        account=jc.client, ttl_s=24 * 3600,
    )  # fmt: skip

    # Assert
    refused(network, node, sent, 401, "BadSignature", "ahead")
    serves(node)


def test_replayed_request_is_401(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare: a good job, accepted
    body = jc.request()
    raw = json.dumps(body).encode()
    first = jc.submit(body)
    assert first.status == 200, first.response.text
    jc.accept(body, JobResult.model_validate_json(first.response.content))
    assert first.signed is not None

    # Execute: the very same bytes and headers again
    again = network.http.post(
        f"{node.url}/v1/jobs",
        content=raw,
        headers={**first.signed.headers, "content-type": "application/json"},
    )

    # Assert
    refused(network, node, Sent(None, again), 401, "BadSignature", "replayed")
    serves(node)


FORGERIES = {  # how the signature is wrong -> what the node says
    "another body": "bad signature",
    "another path": "bad signature",
    "another recipient": "bad signature",
    "another chain": "bad signature",
    "another market": "bad signature",
    "garbled signature": "malformed signature headers",
    "truncated signature": "65 bytes",
    "no nonce": "nonce is missing",
    "no expiry": "expiry is missing",
    "nonce not a number": "malformed signature headers",
    "sender not an address": "malformed signature headers",
}


@pytest.mark.parametrize(("forgery", "says"), FORGERIES.items(), ids=list(FORGERIES))
def test_bad_signature_is_401(
    network: Network, node: Node, jc: JobChannel, serves: Serves, forgery: str, says: str
) -> None:
    # Prepare
    body = json.dumps(jc.request()).encode()
    other_node = network.nodes[1]
    kw: dict[str, Any] = {}
    if forgery == "another body":
        kw["signed_body"] = body + b" "
    elif forgery == "another path":
        kw["signed_path"] = "/v1/vouchers"
    elif forgery == "another recipient":
        kw["recipient"] = other_node.address
    elif forgery == "another chain":
        kw["domain"] = node_domain(network.info.chain_id + 1, network.info.deployment.market)
    elif forgery == "another market":
        kw["domain"] = node_domain(network.info.chain_id, network.info.deployment.token)
    elif forgery == "garbled signature":
        kw["headers"] = {H_SIGNATURE: "0x" + "zz" * 65}
    elif forgery == "truncated signature":
        kw["headers"] = {H_SIGNATURE: "0x" + "11" * 64}
    elif forgery == "no nonce":
        kw["headers"] = {H_NONCE: ""}
    elif forgery == "no expiry":
        kw["headers"] = {H_EXPIRY: ""}
    elif forgery == "nonce not a number":
        kw["headers"] = {H_NONCE: "twelve"}
    elif forgery == "sender not an address":
        kw["headers"] = {H_SENDER: "0x1234"}

    # Execute
    sent = send(network, node, "POST", "/v1/jobs", body, account=jc.client, **kw)

    # Assert
    refused(network, node, sent, 401, "BadSignature", says)
    serves(node)


# -- 403: signed by someone who may not ---------------------------------------------------
def test_job_signed_by_another_than_the_channels_client_is_403(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Execute: JOB_CLIENT's channel, signed by a stranger
    sent = jc.submit(jc.request(), account=network.account(STRANGER))

    # Assert
    refused(network, node, sent, 403, "Unauthorized", "channel's client")
    serves(node)


def test_channel_paying_another_provider_is_403(
    network: Network, node: Node, job_channels: dict[int, JobChannel], serves: Serves
) -> None:
    # Prepare: the channel that pays node 2, sent to node 1
    other = job_channels[network.nodes[1].index]
    body = other.request()

    # Execute
    sent = send(network, node, "POST", "/v1/jobs", json.dumps(body).encode(), account=other.client)

    # Assert
    refused(network, node, sent, 403, "Unauthorized", "another provider")
    serves(node)


def test_voucher_from_a_stranger_is_403(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare
    body = json.dumps({"channel": jc.channel.terms_json(), "voucher": _voucher(jc)}).encode()

    # Execute
    sent = send(network, node, "POST", "/v1/vouchers", body, account=network.account(STRANGER))

    # Assert
    refused(network, node, sent, 403, "Unauthorized", "channel's client")
    serves(node)


# -- bad vouchers: wrong signer 403, wrong root or amount 400 ---------------------------------
def _forged_voucher(
    network: Network,
    jc: JobChannel,
    *,
    signer: int = JOB_CLIENT,
    signature_hex: str | None = None,
    **changes: Any,
) -> dict[str, Any]:
    ch = jc.channel
    assert ch.voucher is not None
    good, _ = ch.voucher
    fields = {
        "amount": good.amount,
        "jobs": good.jobs,
        "units": good.units,
        "receipts_root": good.receipts_root,
        **changes,
    }
    voucher = Voucher(ch.terms.id, **fields)
    signature = sign_voucher(network.account(signer), network.ledger.market.domain(), voucher)
    model = VoucherModel.of(voucher, signature).model_dump()
    return {**model, "signature": signature_hex or model["signature"]}


VOUCHER_CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("signed by a stranger", {"signer": STRANGER}, 403, "Unauthorized", "not signed"),
    (
        "signed for another market",
        {"signature_hex": "<another market>"},
        403,
        "Unauthorized",
        "not signed",
    ),
    ("malformed signature", {"signature_hex": "0x" + "11" * 65}, 400, "InvalidInput", "voucher"),
    ("wrong root", {"receipts_root": b"\x01" * 32}, 400, "InvalidInput", "root"),
    ("amount too high", {"amount_delta": 1}, 400, "InvalidInput", "receipts say"),
    ("amount too low", {"amount_delta": -1}, 400, "InvalidInput", "receipts say"),
    ("more jobs than delivered", {"jobs_delta": 10**6}, 400, "InvalidInput", "delivered"),
    ("no jobs", {"jobs": 0}, 400, "InvalidInput", "at least one job"),
]


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/vouchers"])
@pytest.mark.parametrize(
    ("change", "status", "error", "says"),
    [case[1:] for case in VOUCHER_CASES],
    ids=[case[0] for case in VOUCHER_CASES],
)
def test_bad_voucher_is_refused(
    network: Network,
    node: Node,
    jc: JobChannel,
    serves: Serves,
    route: str,
    change: dict[str, Any],
    status: int,
    error: str,
    says: str,
) -> None:
    # Prepare
    change = dict(change)
    assert jc.channel.voucher is not None
    good = jc.channel.voucher[0]
    if "amount_delta" in change:
        change["amount"] = good.amount + change.pop("amount_delta")
    if "jobs_delta" in change:
        change["jobs"] = good.jobs + change.pop("jobs_delta")
    if change.get("signature_hex") == "<another market>":
        other = Domain(MARKET_DOMAIN_NAME, network.info.chain_id, network.info.deployment.token)
        change["signature_hex"] = "0x" + sign_voucher(jc.client, other, good).to_bytes().hex()
    voucher = _forged_voucher(network, jc, **change)
    if route == "/v1/jobs":
        body = json.dumps(jc.request(voucher=voucher)).encode()
    else:
        body = json.dumps({"channel": jc.channel.terms_json(), "voucher": voucher}).encode()

    # Execute
    sent = send(network, node, "POST", route, body, account=jc.client)

    # Assert
    refused(network, node, sent, status, error, says)
    serves(node)


def test_voucher_for_a_channel_without_jobs_is_400(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare: a channel the node has never delivered on
    client = network.account(JOB_CLIENT)
    fresh = JobChannel(network, node, client, jc.digits, deposit=TOKEN // 100)
    body = {"channel": fresh.channel.terms_json(), "voucher": _forged_voucher(network, jc)}

    # Execute
    sent = send(network, node, "POST", "/v1/vouchers", json.dumps(body).encode(), account=client)

    # Assert
    refused(network, node, sent, 400, "InvalidInput", "no jobs")
    serves(node)


# -- 409: duplicate job id or sequence number -------------------------------------------------
def test_duplicate_job_id_is_409(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare: a job id already used on this node
    used = jc.request()
    jc.run(used)

    # Execute: a new sequence number with the old id
    sent = jc.submit(jc.request(job_id=used["job_id"]))

    # Assert
    refused(network, node, sent, 409, "DuplicateJob", "job id")
    serves(node)


def test_duplicate_sequence_number_is_409(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Execute: a new job id with a sequence number already delivered
    sent = jc.submit(jc.request(seq=jc.channel.next_seq - 1))

    # Assert
    refused(network, node, sent, 409, "DuplicateJob", "sequence number")
    serves(node)


# -- 402: the channel cannot pay --------------------------------------------------------------
def test_channel_with_no_deposit_left_is_402(
    network: Network, node: Node, jc: JobChannel, serves: Serves, digits: Digits
) -> None:
    # Prepare: a channel whose deposit pays exactly one job, and that job
    client = network.account(JOB_CLIENT)
    poor = JobChannel(network, node, client, digits, deposit=jc.amount(jc.rows.shape[0]))
    poor.run()

    # Execute
    sent = poor.submit(poor.request())

    # Assert
    refused(network, node, sent, 402, "PaymentRequired", "deposit")
    serves(node)


def test_channel_topped_up_pays_at_once(
    network: Network, node: Node, jc: JobChannel, serves: Serves, digits: Digits
) -> None:
    # Prepare: a channel spent on one job, then topped up on chain (as the SDK does, before
    # the node could refuse anything)
    client = network.account(JOB_CLIENT)
    one_job = jc.amount(jc.rows.shape[0])
    topped = JobChannel(network, node, client, digits, deposit=one_job)
    topped.run()
    market = network.ledger.market
    network.ledger.token.approve(market.address, one_job, sender=client)
    market.top_up(topped.terms, one_job, topped.channel.expiry, sender=client)

    # Execute + Assert: the node looks at the chain again rather than refuse on old news
    topped.run()
    serves(node)


def test_channel_not_on_chain_is_402(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare: terms that were never opened
    channel = {**jc.channel.terms_json(), "salt": jc.channel.terms.salt + 1}

    # Execute
    sent = jc.submit(jc.request(channel=channel, seq=1, voucher=None))

    # Assert
    refused(network, node, sent, 402, "PaymentRequired", "not open")
    serves(node)


def test_channel_about_to_expire_is_402(
    network: Network, node: Node, digits: Digits, serves: Serves
) -> None:
    # Prepare: a channel open for ten more seconds
    client = network.account(JOB_CLIENT)
    short = JobChannel(network, node, client, digits, deposit=TOKEN // 100, ttl_s=10)

    # Execute
    sent = short.submit(short.request())

    # Assert
    refused(network, node, sent, 402, "PaymentRequired", "expires")
    serves(node)


# -- 404: unknown blobs -------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["model", "input_blob"])
def test_unknown_blob_in_job_is_404(
    network: Network, node: Node, jc: JobChannel, serves: Serves, field: str
) -> None:
    # Prepare
    unknown = hashlib.sha256(os.urandom(16)).hexdigest()
    body = jc.request(**{field: unknown})
    if field == "input_blob":
        body["input_npy"] = None

    # Execute
    sent = jc.submit(body)

    # Assert
    refused(network, node, sent, 404, "BlobNotFound", unknown)
    serves(node)


def test_unknown_blob_download_is_404(
    network: Network, node: Node, jc: JobChannel, serves: Serves
) -> None:
    # Prepare
    unknown = hashlib.sha256(os.urandom(16)).hexdigest()

    # Execute
    sent = send(network, node, "GET", f"/v1/blobs/{unknown}", account=jc.client)
    head = network.http.head(f"{node.url}/v1/blobs/{unknown}")

    # Assert
    refused(network, node, sent, 404, "BlobNotFound", unknown)
    assert head.status_code == 404
    serves(node)
