"""Every check the client makes before it pays, driven through a fake provider transport.

Each lie ends in no voucher for that result (the channel's voucher, amount and accepted
receipts stay as they were, its reservation is released, it is retired) and in a
fail-over (``ProviderFailed``) or one clear error, as docs/network.md's fail-over table
says. The provider answers one honest job first, so "unchanged" means something.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from idlegrid.chain import ChannelTerms
from idlegrid.client import (
    Candidate,
    ClientChannel,
    JobTimedOut,
    ModelRejected,
    ModelSpec,
    OutputSpec,
    ProviderFailed,
    ProviderRefused,
    ProviderSession,
)
from idlegrid.protocol import (
    MARKET_DOMAIN_NAME,
    Account,
    Domain,
    Receipt,
    node_domain,
    npy_bytes,
    receipts_root,
    recover_voucher_signer,
)
from idlegrid.workloads import get_workload
from idlegrid.workloads._kind_onnx import OnnxPlan

from .fake_provider import FakeProvider, Lies, three_columns

CHAIN_ID = 31337
MARKET = "0x" + "42" * 20
PRICE = 3
FLOPS_PER_ROW = 1000
EXPECT = OutputSpec("y", np.dtype(np.float32), (3,))
#: the model as the client read it (the fake provider computes its outputs itself)
MODEL = ModelSpec("ab" * 32, b"an onnx model", FLOPS_PER_ROW, EXPECT, metered=None)
ROWS = np.arange(8, dtype=np.float32).reshape(4, 2)


@dataclass
class Setup:
    """A client, a fake provider behind its transport, a session and a channel between them."""

    client: Account
    market: Domain
    provider: FakeProvider
    session: ProviderSession
    channel: ClientChannel

    async def reserve(self, amount: int) -> ClientChannel:
        self.channel.committed += amount
        return self.channel

    def run(self, rows: np.ndarray = ROWS) -> np.ndarray:
        """One job of ``rows`` through the session, as a batch of the test model would."""
        plan = OnnxPlan(MODEL, rows, out_row_bytes=12)
        plan.workload = get_workload("onnx")
        return asyncio.run(self.session.run(self.reserve, plan, rows))

    def state(self) -> tuple[Any, ...]:
        """What the client has agreed to pay on the channel."""
        ch = self.channel
        return ch.voucher, ch.amount, ch.units, dict(ch.accepted), ch.prefix.count


@pytest.fixture
def setup() -> Setup:
    client, provider = Account.create(), Account.create()
    node = node_domain(CHAIN_ID, MARKET)
    market = Domain(MARKET_DOMAIN_NAME, CHAIN_ID, MARKET)
    fake = FakeProvider(provider, node, price=PRICE, flops_per_row=FLOPS_PER_ROW)
    candidate = Candidate(provider.address, "http://provider.test", PRICE, latency_ms=1.0)
    session = ProviderSession(client, candidate, node, market, fake, timeout_s=5.0)
    terms = ChannelTerms.new(client.address, provider.address, 10**9, int(time.time()) + 3600)
    channel = ClientChannel(terms, deposit=terms.deposit, expiry=terms.expiry)
    return Setup(client, market, fake, session, channel)


def _nan(rows: np.ndarray) -> np.ndarray:
    out = three_columns(rows)
    out[0, 1] = np.nan
    return out


def _inf(rows: np.ndarray) -> np.ndarray:
    out = three_columns(rows)
    out[-1, 0] = np.inf
    return out


def _lie(
    name: str, lies: Lies, says: str, error: type[Exception] = ProviderFailed
) -> Any:  # a pytest.param
    """A provider that gets something wrong: the error the client ends in, and what it says."""
    return pytest.param(lies, error, says, id=name)


LIES = [
    _lie("units over the bill", Lies(units=1), "bill of 4001 units, expected 4000"),
    _lie("units under the bill", Lies(units=-1), "bill of 3999 units, expected 4000"),
    _lie("amount not units times price", Lies(amount=1), "amount 12001 is not 4000 units"),
    _lie("forged receipt", Lies(receipt_key=Account.create()), "receipt not signed by"),
    _lie("missing receipt signature", Lies(no_receipt_signature=True), "receipt_signature"),
    _lie("result hash mismatch", Lies(wrong_result_hash=True), "result hash does not match"),
    _lie(
        "receipt names other work",
        Lies(digests=(b"\x01" * 32, b"\x02" * 32)),
        "another spec or other inputs",
    ),
    _lie(
        "one row too many",
        Lies(output=lambda r: three_columns(np.concatenate([r, r[:1]]))),
        "5 output rows for 4 input rows",
    ),
    _lie("one row too few", Lies(output=lambda r: three_columns(r[1:])), "3 output rows for 4"),
    _lie(
        "wrong dtype",
        Lies(output=lambda r: three_columns(r).astype(np.float64)),
        "output dtype float64, the model declares float32",
    ),
    _lie(
        "wrong trailing shape",
        Lies(output=lambda r: np.zeros((r.shape[0], 4), np.float32)),
        r"output shape \(4, 4\), the model declares float32\[N, 3\]",
    ),
    _lie(
        "wrong rank",
        Lies(output=lambda r: three_columns(r)[:, :, None]),
        r"output shape \(4, 3, 1\)",
    ),
    _lie("NaN in the output", Lies(output=_nan), "NaN or infinite"),
    _lie("Inf in the output", Lies(output=_inf), "NaN or infinite"),
    _lie("0-d output", Lies(output=lambda r: np.array(1.0, np.float32)), r"scalar \(0-d\)"),
    _lie("unsigned 200", Lies(response_signature="none"), "unsigned or forged response"),
    _lie("forged 200", Lies(response_signature="forged"), "unsigned or forged response"),
    _lie("signed 400", Lies(status=400), "refused the job", ProviderRefused),
    _lie("signed 404", Lies(status=404), "HTTP 404"),
    _lie("signed 402", Lies(status=402), "HTTP 402"),
    _lie("unsigned 400", Lies(status=400, response_signature="none"), "HTTP 400.*unsigned"),
    _lie("unsigned 403", Lies(status=403, response_signature="none"), "HTTP 403.*unsigned"),
    _lie("timeout mid-body", Lies(stall=True), "timed out on /v1/jobs"),
    _lie(
        "422 billed over its budget",
        Lies(fail="InvalidInput: bad rank", fail_units=FLOPS_PER_ROW * ROWS.shape[0] + 1),
        "4001 units for a failed job",
    ),
    _lie(
        "422 with a forged receipt",
        Lies(fail="InvalidInput: bad rank", receipt_key=Account.create()),
        "receipt not signed by",
    ),
]


@pytest.mark.parametrize(("lies", "error", "says"), LIES)
def test_a_lie_is_never_paid_for_and_ends_in_one_error(
    setup: Setup, lies: Lies, error: type[Exception], says: str
) -> None:
    # Prepare
    setup.run()  # one honest job: a voucher the lie must not move
    before = setup.state()
    committed = setup.channel.committed
    setup.provider.lies = lies

    # Execute
    with pytest.raises(error, match=says) as raised:
        setup.run()

    # Assert
    assert type(raised.value) is error, raised.value
    assert setup.state() == before
    assert setup.channel.committed == committed  # the job's reservation is released
    assert setup.channel.retired  # no more jobs on a channel with an undelivered seq
    assert len(setup.provider.jobs) == 2  # the lie was about a job it was sent


def test_an_honest_result_is_paid_with_a_voucher_for_exactly_its_receipt(setup: Setup) -> None:
    # Prepare
    expected = three_columns(ROWS)

    # Execute
    output = setup.run()

    # Assert
    np.testing.assert_array_equal(output, expected)
    ch = setup.channel
    assert list(ch.accepted) == [1]
    receipt = ch.accepted[1]
    job = setup.provider.jobs[0]
    units = FLOPS_PER_ROW * ROWS.shape[0]
    assert receipt == Receipt(
        ch.terms.id,
        bytes.fromhex(job.job_id[2:]),
        setup.provider.account.address,
        *get_workload("onnx").digests(job.spec_fields()),
        hashlib.sha256(npy_bytes(expected)).digest(),
        units,
        units * PRICE,
    )
    assert ch.voucher is not None
    voucher, signature = ch.voucher
    assert (voucher.channel, voucher.amount, voucher.jobs, voucher.units) == (
        ch.terms.id,
        units * PRICE,
        1,
        units,
    )
    assert voucher.receipts_root == receipts_root([receipt])
    assert recover_voucher_signer(setup.market, voucher, signature) == setup.client.address
    assert ch.committed == units * PRICE and not ch.retired


def test_the_next_job_carries_the_voucher_for_the_previous_one(setup: Setup) -> None:
    # Prepare
    setup.run()
    assert setup.channel.voucher is not None
    voucher = setup.channel.voucher_model()

    # Execute
    setup.run()

    # Assert
    first, second = setup.provider.jobs
    assert first.voucher is None and second.voucher == voucher
    assert (first.seq, second.seq) == (1, 2)
    assert setup.channel.prefix.count == 2


FailedJob = tuple[str, type[Exception]]


@pytest.mark.parametrize(
    "failed",
    [
        ("InvalidInput: the model wants 3 columns", ModelRejected),
        ("JobTimeout: past 30 s", JobTimedOut),
        ("JobCrashed: the worker died", JobTimedOut),
    ],
    ids=lambda f: f[0].split(":")[0],
)
def test_a_billed_failure_is_accepted_into_the_channel(setup: Setup, failed: FailedJob) -> None:
    # Prepare
    error, raised = failed
    setup.provider.lies = Lies(fail=error, fail_units=7)

    # Execute
    with pytest.raises(raised):
        setup.run()

    # Assert
    ch = setup.channel
    assert list(ch.accepted) == [1]
    assert ch.accepted[1].result_hash == hashlib.sha256(error.encode()).digest()
    assert ch.voucher is not None
    assert (ch.voucher[0].amount, ch.voucher[0].units) == (7 * PRICE, 7)
    assert ch.committed == 7 * PRICE and not ch.retired


def test_the_client_sends_the_node_s_wire_models(setup: Setup) -> None:
    # Execute
    setup.run()
    asyncio.run(setup.session.send_voucher(setup.channel))

    # Assert
    job = setup.provider.jobs[0]  # parsed with the node's JobRequest
    assert (job.kind, job.unit_price) == ("onnx", PRICE)
    assert setup.provider.bodies[0]["model"] == MODEL.digest
    assert job.channel.salt == setup.channel.terms.salt
    [submitted] = setup.provider.vouchers  # parsed with the node's VoucherSubmission
    assert submitted.voucher == setup.channel.voucher_model()
    assert setup.channel.voucher_delivered
