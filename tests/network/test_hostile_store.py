"""Attacks on a node's blob store, journal and replay guard, against a real node process.

One devnet of this module's own, with one provider whose upload allowance is small
(``ALLOWANCE``), since some tests restart or kill it. Each test pays from its own
account, so that what one test stores or owes does not count in another.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from idlegrid.chain import TOKEN
from idlegrid.protocol import sign_request
from idlegrid.protocol._envelope import MAX_TTL_S

from .conftest import (
    DEMO_CLIENT,
    FUZZ_CLIENT,
    JOB_CLIENT,
    STRANGER,
    Digits,
    JobChannel,
    Network,
    Node,
    put_blob,
    send,
    start_network,
)

ALLOWANCE = 64 * 1024  # bytes a key without an open channel may store on the node
REDEEM_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def store_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, Node]]:
    net = start_network(tmp_path_factory.mktemp("devnet"), providers=1)
    try:
        first = net.nodes[0]
        node = net.replace(first, [*first.argv, "--upload-allowance", str(ALLOWANCE)])
        yield net, node
    finally:
        net.close()


def _blob_file(node: Node, digest: str) -> str:
    return str(
        node.directory / ".idlegrid" / f"node-{node.index}" / "blobs" / digest[:2] / digest[2:]
    )


def _upload(net: Network, node: Node, data: bytes, account: int) -> httpx.Response:
    digest = hashlib.sha256(data).hexdigest()
    return send(
        net,
        node,
        "PUT",
        f"/v1/blobs/{digest}",
        data,
        account=net.account(account),
        content_type="application/octet-stream",
    ).response


def _get(net: Network, node: Node, digest: str, account: int) -> httpx.Response:
    return send(net, node, "GET", f"/v1/blobs/{digest}", account=net.account(account)).response


def test_an_upload_over_the_allowance_is_refused_and_nothing_is_stored(
    store_net: tuple[Network, Node],
) -> None:
    # Prepare: a key with no channel on the node fills most of its allowance
    net, node = store_net
    first, second = os.urandom(ALLOWANCE // 2 + 1), os.urandom(ALLOWANCE // 2)
    assert _upload(net, node, first, STRANGER).status_code == 201

    # Execute
    refused = _upload(net, node, second, STRANGER)
    again = _upload(net, node, first, STRANGER)  # what it stores already costs nothing

    # Assert
    assert refused.status_code == 413
    assert refused.json()["error"] == "PayloadTooLarge"
    assert f"allowance of {ALLOWANCE} bytes" in refused.json()["reason"]
    assert "open channel" in refused.json()["reason"]
    digest = refused.request.url.path.rsplit("/", 1)[1]
    assert net.http.head(f"{node.url}/v1/blobs/{digest}").status_code == 404
    assert not os.path.exists(_blob_file(node, digest))
    assert again.status_code == 201


def test_a_client_with_an_open_channel_may_store_more(
    store_net: tuple[Network, Node], digits: Digits
) -> None:
    # Prepare: a client with a channel the node has seen open (it ran a job on it)
    net, node = store_net
    put_blob(net, node, digits.model, account=net.account(JOB_CLIENT))
    JobChannel(net, node, net.account(JOB_CLIENT), digits, deposit=TOKEN).run()

    # Execute
    statuses = [_upload(net, node, os.urandom(ALLOWANCE), JOB_CLIENT).status_code for _ in "ab"]

    # Assert
    assert statuses == [201, 201]


def test_a_stranger_cannot_read_another_clients_blob(
    store_net: tuple[Network, Node], digits: Digits
) -> None:
    # Prepare: a client's upload, and another client that pays this node
    net, node = store_net
    data = os.urandom(1000)
    assert _upload(net, node, data, DEMO_CLIENT).status_code == 201
    digest = hashlib.sha256(data).hexdigest()
    put_blob(net, node, digits.model, account=net.account(FUZZ_CLIENT))
    JobChannel(net, node, net.account(FUZZ_CLIENT), digits, deposit=TOKEN).run()

    # Execute
    stranger = _get(net, node, digest, STRANGER)
    owner = _get(net, node, digest, DEMO_CLIENT)
    payer = _get(net, node, digest, FUZZ_CLIENT)  # fetches a model by its sha256, say

    # Assert
    assert stranger.status_code == 403
    assert stranger.json()["error"] == "Unauthorized"
    assert "open a channel" in stranger.json()["reason"]
    assert data not in stranger.content
    assert owner.status_code == payer.status_code == 200
    assert owner.content == payer.content == data


def test_a_corrupt_blob_is_refused_and_can_be_uploaded_again(
    store_net: tuple[Network, Node],
) -> None:
    # Prepare: a stored blob whose file goes bad on the node's disk
    net, node = store_net
    data = os.urandom(2000)
    assert _upload(net, node, data, DEMO_CLIENT).status_code == 201
    digest = _upload(net, node, data, DEMO_CLIENT).request.url.path.rsplit("/", 1)[1]
    path = _blob_file(node, digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"\x00" * 16)

    # Execute
    refused = _get(net, node, digest, DEMO_CLIENT)
    announced = net.http.head(f"{node.url}/v1/blobs/{digest}").status_code
    uploaded = _upload(net, node, data, DEMO_CLIENT)
    served = _get(net, node, digest, DEMO_CLIENT)

    # Assert
    assert refused.status_code == 404
    assert refused.json()["error"] == "BlobCorrupt"
    assert "upload it again" in refused.json()["reason"]
    assert announced == 404  # removed: a client that asks uploads it again
    assert uploaded.status_code == 201
    assert served.status_code == 200 and served.content == data


def test_a_request_replayed_after_a_restart_is_refused(store_net: tuple[Network, Node]) -> None:
    # Prepare: a signed request the node answered, recorded by an eavesdropper
    net, node = store_net
    data = os.urandom(500)
    assert _upload(net, node, data, DEMO_CLIENT).status_code == 201
    path = f"/v1/blobs/{hashlib.sha256(data).hexdigest()}"
    signed = sign_request(
        net.account(DEMO_CLIENT), net.domain, node.address, "GET", path, b"", ttl_s=MAX_TTL_S
    )
    first = net.http.get(node.url + path, headers=signed.headers)
    assert first.status_code == 200

    # Execute: the node is killed and started again, then the request is replayed
    net.kill(node)
    net.restart(node)
    replayed = net.http.get(node.url + path, headers=signed.headers)

    # Assert
    assert replayed.status_code == 401
    assert replayed.json()["error"] == "BadSignature"
    assert "replayed" in replayed.json()["reason"]


def test_a_kill_between_result_and_voucher_loses_nothing(
    store_net: tuple[Network, Node], digits: Digits
) -> None:
    # Prepare: a job delivered and accepted by its client, whose voucher has not reached
    # the node when the node is killed
    net, node = store_net
    client = net.account(DEMO_CLIENT)
    put_blob(net, node, digits.model, account=client)
    channel = JobChannel(net, node, client, digits, deposit=TOKEN)
    channel.run()
    channel.run()
    voucher = channel.channel.voucher_model()
    assert voucher is not None and channel.channel.amount == 2 * channel.amount(2)
    market = net.ledger.market
    net.kill(node)
    # read once the node is dead: it may have redeemed an earlier job's voucher while it
    # ran (under load), and can redeem nothing more until it is started again
    earned = market.record(node.address).earned - market.channel(channel.terms).paid

    # Execute: started again, it is handed the voucher
    net.restart(node)
    body = {"channel": channel.channel.terms_json(), "voucher": voucher.model_dump()}
    sent = send(net, node, "POST", "/v1/vouchers", json.dumps(body).encode(), account=client)

    # Assert: it still knew both deliveries, took the voucher and redeemed all of it
    assert sent.status == 200, sent.response.text
    assert sent.response.json() == {"accepted": True}
    deadline = time.monotonic() + REDEEM_TIMEOUT
    while market.channel(channel.terms).paid < channel.channel.amount:
        assert time.monotonic() < deadline, "the voucher was not redeemed in time"
        time.sleep(0.25)
    assert market.channel(channel.terms).paid == channel.channel.amount
    assert market.record(node.address).earned - earned == channel.channel.amount
