# pragma version ~=0.4.3
"""
@title idlegrid IdlegridOracle
@notice AI inside smart contracts: a contract asks for a registered model's answer
        on one row of features and gets it back in a callback.
        A consumer calls `request(model, input, mode, fee)` (after approving `fee`
        of the network's token); the oracle keeps one word per request (a hash of
        what was asked) and emits `Requested`. In quorum mode (mode 0) `k`
        providers (the consumer's `quorum`, 3 by default) are drawn from the
        registry's active providers with on-chain randomness; each runs the
        model and signs its own answer; one transaction (`fulfill`) brings the
        answers of a majority of them, like a Chainlink OCR report. The oracle
        takes the median of each output (for labels the majority value), pays
        the providers whose answers are within tolerance of it, names the others
        in `Outlier` (the dispute path), and calls
        `onInference(requestId, output)` on the consumer with `CALLBACK_GAS`
        gas. A consumer whose callback reverts or runs out of gas does not block
        the oracle, and the providers are paid all the same. A request not
        answered by its deadline is refunded in full to its consumer
        (`cancel`). Inputs and outputs are fixed point with 18 decimals.
@dev Money: the oracle's token balance always equals the fees of open
     requests plus the providers' unwithdrawn earnings (`owed`); a fee is paid
     out once (fulfilment) or refunded once (cancel), never both.
     What is stored per request is `commitments[id]`, the keccak256 of the
     `Commitment` (consumer, model, input hash, mode, k, fee, deadline, seed);
     `fulfill` and `cancel` take the commitment back from the `Requested`
     event and the oracle checks its hash: one storage word per request instead
     of eight (Chainlink Functions does the same).
     The committee is drawn from the active set at fulfilment: positions
     `keccak256(seed, id, j) % active_count` for j = 0, 1, ..., skipping
     repeats, until k distinct providers; a provider answers for its position.
     The seed mixes `block.prevrandao` of the request's block: not known to
     the consumer before its transaction is in a block, short of proposing it.
     Zero-knowledge mode (mode 1) needs a verifier linked to the model in the
     ModelRegistry (`linkVerifier`, by the model's registrant); its answer is
     one provider's output and a proof the verifier checks.
"""

from ethereum.ercs import IERC20

import ecdsa
import eip712

initializes: eip712

exports: eip712.DOMAIN_SEPARATOR


interface IModels:
    def registered(model: bytes32) -> bool: view
    def verifier(model: bytes32) -> address: view
    def model(model: bytes32) -> (bytes32, bytes32, bytes32, bytes32, address, address, uint256, bytes32): view


interface IRegistry:
    def active_count() -> uint256: view
    def active_at(positions: DynArray[uint256, 16]) -> DynArray[address, 16]: view
    def is_active(provider: address) -> bool: view


interface IVerifier:
    def verify(model: bytes32, input: DynArray[int256, MAX_INPUT], output: DynArray[int256, MAX_OUTPUT], proof: Bytes[MAX_PROOF]) -> bool: view


# features in one request's input, outputs in one answer
MAX_INPUT: public(constant(uint256)) = 64
MAX_OUTPUT: public(constant(uint256)) = 16
# providers in one quorum, and the default quorum
MAX_K: public(constant(uint256)) = 7
DEFAULT_K: public(constant(uint8)) = 3
# gas the consumer's onInference gets (fixed, documented: at least 200,000)
CALLBACK_GAS: public(constant(uint256)) = 200_000
# seconds a request waits for its answer before its consumer may cancel it
RESPONSE_WINDOW: public(constant(uint256)) = 300
# an answer agrees with the result when within ABS_TOL or REL_TOL_PPM / 1e6 of it
ABS_TOL: public(constant(uint256)) = 10**12
REL_TOL_PPM: public(constant(uint256)) = 1_000
# bytes of a zero-knowledge proof
MAX_PROOF: public(constant(uint256)) = 16384
# positions tried when drawing a committee (repeats are skipped)
MAX_DRAWS: constant(uint256) = 64
# requests in one delivery, and output values in one delivery (all answers)
MAX_BATCH: public(constant(uint256)) = 8
MAX_REPORT_OUTPUTS: public(constant(uint256)) = 256
MAX_REPORT_BYTES: constant(uint256) = MAX_REPORT_OUTPUTS * 32

QUORUM: constant(uint8) = 0
ZK: constant(uint8) = 1

ON_INFERENCE: constant(Bytes[4]) = method_id("onInference(uint256,int256[])")
ANSWER_TYPEHASH: constant(bytes32) = keccak256(
    "OracleAnswer(uint256 requestId,bytes32 commitment,bytes32 outputHash)"
)


struct Commitment:
    consumer: address
    model: bytes32
    input_hash: bytes32
    mode: uint8
    k: uint8
    fee: uint256
    deadline: uint256
    seed: bytes32


struct Head:
    request_id: uint256
    c: Commitment
    # answers in this report for the request, and outputs in each answer
    answers: uint256
    width: uint256
    # committee position of answer i in byte i (lowest byte first), ascending
    positions: uint256


struct Sig:
    v: uint8
    r: bytes32
    s: bytes32


event Requested:
    request_id: indexed(uint256)
    consumer: indexed(address)
    model: indexed(bytes32)
    input: DynArray[int256, MAX_INPUT]
    mode: uint8
    k: uint8
    fee: uint256
    deadline: uint256
    seed: bytes32
    input_hash: bytes32


event Fulfilled:
    request_id: indexed(uint256)
    consumer: indexed(address)
    output: DynArray[int256, MAX_OUTPUT]
    paid: DynArray[address, MAX_K]
    callback_ok: bool


event Outlier:
    request_id: indexed(uint256)
    provider: indexed(address)
    output: DynArray[int256, MAX_OUTPUT]
    named_at: uint256


event Cancelled:
    request_id: indexed(uint256)
    consumer: indexed(address)
    refund: uint256


event QuorumSet:
    consumer: indexed(address)
    k: uint8


event WidthDeclared:
    model: indexed(bytes32)
    width: uint256


event Withdrawn:
    provider: indexed(address)
    amount: uint256


token: public(immutable(IERC20))
models: public(immutable(IModels))
registry: public(immutable(IRegistry))

# keccak256(abi_encode(Commitment)) of each open request; empty once answered or cancelled
commitments: public(HashMap[uint256, bytes32])
next_request_id: public(uint256)
# a consumer's quorum size (0: DEFAULT_K)
quorum: public(HashMap[address, uint8])
# what each provider earned and has not withdrawn
owed: public(HashMap[address, uint256])
# each model's input width (features), when its registrant declared it (0: not declared)
input_width: public(HashMap[bytes32, uint256])
# the dispute path's evidence: for keccak256(abi_encode(request_id, provider)) of an
# answer named in `Outlier`, keccak256(abi_encode(model, input_hash, output_hash,
# named_at)); the Disputes contract opens a dispute on it (`open_answer`)
outliers: public(HashMap[bytes32, bytes32])


@deploy
def __init__(token_: IERC20, models_: IModels, registry_: IRegistry):
    """
    @param token_ The network's token (fees are paid in it).
    @param models_ The ModelRegistry: a request names a registered model.
    @param registry_ The ProviderRegistry: committees are drawn from its active providers.
    """
    eip712.__init__("idlegrid Oracle")
    token = token_
    models = models_
    registry = registry_
    self.next_request_id = 1


@external
def request(model: bytes32, input: DynArray[int256, MAX_INPUT], mode: uint8, fee: uint256) -> uint256:
    """
    @notice Ask for `model`'s answer on `input` (one row, 18 decimals); the fee is
            pulled from the caller, who gets `onInference(requestId, output)`.
    @param model The sha256 of an ONNX model registered in the ModelRegistry.
    @param input One row of features, fixed point with 18 decimals (1e18 is 1.0).
    @param mode 0: quorum of the caller's `quorum` providers; 1: one provider and a
           zero-knowledge proof checked on chain.
    @param fee Tokens for the answering providers (approve the oracle first).
    @return The request's id.
    """
    assert len(input) > 0, "oracle: empty input"
    assert mode == QUORUM or mode == ZK, "oracle: mode is 0 (quorum) or 1 (zero-knowledge)"
    width: uint256 = self.input_width[model]
    if width == 0:
        # a declared width implies a registered model (records are never removed)
        assert staticcall models.registered(model), "oracle: model not registered"
    else:
        assert len(input) == width, "oracle: input width differs from the model's"
    k: uint8 = 1
    if mode == ZK:
        assert staticcall models.verifier(model) != empty(address), "oracle: no verifier linked to this model"
    else:
        k = self.quorum[msg.sender]
        if k == 0:
            k = DEFAULT_K
    request_id: uint256 = self.next_request_id
    self.next_request_id = request_id + 1
    deadline: uint256 = block.timestamp + RESPONSE_WINDOW
    seed: bytes32 = keccak256(abi_encode(block.prevrandao, request_id, msg.sender))
    input_hash: bytes32 = keccak256(abi_encode(input))
    c: Commitment = Commitment(
        consumer=msg.sender, model=model, input_hash=input_hash, mode=mode, k=k, fee=fee,
        deadline=deadline, seed=seed,
    )
    self.commitments[request_id] = keccak256(abi_encode(c))
    if fee > 0:
        assert extcall token.transferFrom(msg.sender, self, fee, default_return_value=True), "oracle: fee transfer failed"
    log Requested(
        request_id=request_id, consumer=msg.sender, model=model, input=input, mode=mode, k=k,
        fee=fee, deadline=deadline, seed=seed, input_hash=input_hash,
    )
    return request_id


@external
def set_quorum(k: uint8):
    """
    @notice The number of providers the caller's quorum requests draw (1..7).
    """
    assert k >= 1 and convert(k, uint256) <= MAX_K, "oracle: quorum is 1 to 7 providers"
    self.quorum[msg.sender] = k
    log QuorumSet(consumer=msg.sender, k=k)


@external
def fulfill(heads: DynArray[Head, MAX_BATCH], sigs: DynArray[Sig, MAX_BATCH * MAX_K], outputs: Bytes[MAX_REPORT_BYTES]) -> uint256:
    """
    @notice Deliver quorum requests' answers, one request or several in one
            transaction (an OCR report covering a round: the transaction's own cost,
            the committee's storage reads and the providers' credits are shared).
            For each request (`heads`, with its commitment) come the signed answers
            of a majority of its committee in position order: their signatures in
            `sigs` and their outputs, `width` int256 words each, packed in
            `outputs`, one request after another. Anyone may send it.
    @dev Per request: reverts unless at least k // 2 + 1 answers agree with the
         median of each output; answers outside the tolerance are named in
         `Outlier` and not paid. A request no longer open (delivered or cancelled
         meanwhile) or past its deadline is skipped, so that relays racing each
         other lose only gas; when nothing is left to deliver the call reverts with
         the reason. Any other fault reverts the whole report.
    @return The number of requests delivered.
    """
    delivered: uint256 = 0
    skipped: String[40] = ""
    next_sig: uint256 = 0
    next_out: uint256 = 0
    for h: Head in heads:
        n: uint256 = h.answers
        first_sig: uint256 = next_sig
        first_out: uint256 = next_out
        size: uint256 = 32 * h.width
        next_sig += n
        next_out += n * size
        assert next_sig <= len(sigs) and next_out <= len(outputs), "oracle: report shorter than its heads"
        stored: bytes32 = self.commitments[h.request_id]
        if stored == empty(bytes32):
            skipped = "oracle: no open request with this id"
            continue
        if block.timestamp > h.c.deadline:
            skipped = "oracle: request expired"
            continue
        assert stored == keccak256(abi_encode(h.c)), "oracle: not the request's commitment"
        assert h.c.mode == QUORUM, "oracle: not a quorum request"
        k: uint256 = convert(h.c.k, uint256)
        majority: uint256 = k // 2 + 1
        assert n >= majority and n <= k, "oracle: answers from a majority of the committee needed"
        assert h.width > 0 and h.width <= MAX_OUTPUT, "oracle: 1 to 16 outputs in an answer"
        members: DynArray[address, 16] = staticcall registry.active_at(self._positions(h.c.seed, h.request_id, k))
        signers: DynArray[address, MAX_K] = []
        first_hash: bytes32 = empty(bytes32)
        unanimous: bool = True
        last: uint256 = 0
        for i: uint256 in range(MAX_K):
            if i >= n:
                break
            position: uint256 = (h.positions >> (8 * i)) & 255
            assert position < k, "oracle: no such committee position"
            assert i == 0 or position > last, "oracle: answers out of order or repeated"
            last = position
            output_hash: bytes32 = keccak256(slice(outputs, first_out + i * size, size))
            if i == 0:
                first_hash = output_hash
            elif output_hash != first_hash:
                unanimous = False
            j: uint256 = first_sig + i
            assert convert(sigs[j].s, uint256) <= ecdsa.SECP256K1_HALF_N, "oracle: malleable signature"
            digest: bytes32 = eip712._hash_typed_data(
                keccak256(abi_encode(ANSWER_TYPEHASH, h.request_id, stored, output_hash))
            )
            member: address = members[position]
            assert ecdsa._recover(digest, sigs[j].v, sigs[j].r, sigs[j].s) == member, "oracle: answer not signed by its committee member"
            signers.append(member)
        self.commitments[h.request_id] = empty(bytes32)
        if unanimous:
            # the usual case: every answer the same, so it is the median and all agree
            self._pay(h.c.fee, signers)
            self._deliver(h.request_id, h.c.consumer, self._unpack(outputs, first_out, h.width), signers)
        else:
            answers: DynArray[DynArray[int256, MAX_OUTPUT], MAX_K] = []
            for i: uint256 in range(MAX_K):
                if i >= n:
                    break
                answers.append(self._unpack(outputs, first_out + i * size, h.width))
            self._combine(h.request_id, h.c, answers, signers, majority)
        delivered += 1
    assert delivered > 0, skipped
    return delivered


@external
def fulfill_proof(
    request_id: uint256,
    c: Commitment,
    input: DynArray[int256, MAX_INPUT],
    output: DynArray[int256, MAX_OUTPUT],
    proof: Bytes[MAX_PROOF],
):
    """
    @notice Deliver a zero-knowledge request's answer: the output and a proof that
            the registered model gives it on the input, checked by the model's
            verifier before the callback. The sender, an active provider, is paid.
    """
    self._open(request_id, c)
    assert c.mode == ZK, "oracle: not a zero-knowledge request"
    assert block.timestamp <= c.deadline, "oracle: request expired"
    assert keccak256(abi_encode(input)) == c.input_hash, "oracle: not the request's input"
    assert len(output) > 0, "oracle: empty output"
    assert staticcall registry.is_active(msg.sender), "oracle: only an active provider answers"
    verifier: address = staticcall models.verifier(c.model)
    assert verifier != empty(address), "oracle: no verifier linked to this model"
    assert staticcall IVerifier(verifier).verify(c.model, input, output, proof), "oracle: the proof does not verify"
    self.commitments[request_id] = empty(bytes32)
    self._pay(c.fee, [msg.sender])
    self._deliver(request_id, c.consumer, output, [msg.sender])


@external
def cancel(request_id: uint256, c: Commitment):
    """
    @notice Refund an unanswered request whose deadline passed, in full, to its
            consumer (who alone may cancel it).
    """
    self._open(request_id, c)
    assert msg.sender == c.consumer, "oracle: only the consumer cancels"
    assert block.timestamp > c.deadline, "oracle: the request is still open for answers"
    self.commitments[request_id] = empty(bytes32)
    if c.fee > 0:
        assert extcall token.transfer(c.consumer, c.fee, default_return_value=True), "oracle: refund failed"
    log Cancelled(request_id=request_id, consumer=c.consumer, refund=c.fee)


@external
def withdraw() -> uint256:
    """
    @notice Pay the caller what its answers earned; the amount.
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "oracle: nothing owed"
    self.owed[msg.sender] = 0
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "oracle: transfer failed"
    log Withdrawn(provider=msg.sender, amount=amount)
    return amount


@external
def declare_width(model: bytes32, width: uint256):
    """
    @notice Declare how many features `model` takes, so that a request of another
            width reverts at once; by the model's registrant in the ModelRegistry, once.
    """
    registrant: address = (staticcall models.model(model))[5]
    assert registrant != empty(address), "oracle: model not registered"
    assert msg.sender == registrant, "oracle: only the model's registrant declares its width"
    assert self.input_width[model] == 0, "oracle: the width is declared already"
    assert width >= 1 and width <= MAX_INPUT, "oracle: a width is 1 to 64 features"
    self.input_width[model] = width
    log WidthDeclared(model=model, width=width)


@external
@view
def committee(request_id: uint256, c: Commitment) -> DynArray[address, MAX_K]:
    """
    @notice The providers a quorum request's answers must come from, in position
            order, as the active set stands now.
    """
    members: DynArray[address, 16] = staticcall registry.active_at(self._positions(c.seed, request_id, convert(c.k, uint256)))
    out: DynArray[address, MAX_K] = []
    for m: address in members:
        out.append(m)
    return out


@external
@view
def answer_digest(request_id: uint256, commitment: bytes32, output: DynArray[int256, MAX_OUTPUT]) -> bytes32:
    """
    @notice The EIP-712 digest a committee member signs for its answer.
    """
    # the output hash is over the packed int256 words (abi.encodePacked(output))
    packed: Bytes[MAX_OUTPUT * 32 + 64] = abi_encode(output)
    output_hash: bytes32 = keccak256(slice(packed, 64, 32 * len(output)))
    return eip712._hash_typed_data(keccak256(abi_encode(ANSWER_TYPEHASH, request_id, commitment, output_hash)))


@internal
def _combine(
    request_id: uint256,
    c: Commitment,
    answers: DynArray[DynArray[int256, MAX_OUTPUT], MAX_K],
    signers: DynArray[address, MAX_K],
    majority: uint256,
):
    # answers that differ: the median of each output; those outside its tolerance
    # are named in `Outlier` and not paid
    output: DynArray[int256, MAX_OUTPUT] = []
    for j: uint256 in range(MAX_OUTPUT):
        if j >= len(answers[0]):
            break
        column: DynArray[int256, MAX_K] = []
        for a: DynArray[int256, MAX_OUTPUT] in answers:
            column.append(a[j])
        output.append(self._median(column))
    paid: DynArray[address, MAX_K] = []
    for i: uint256 in range(MAX_K):
        if i >= len(answers):
            break
        if self._agrees(answers[i], output):
            paid.append(signers[i])
        else:
            # signed by its provider, so the record is evidence against it alone
            encoded: Bytes[MAX_OUTPUT * 32 + 64] = abi_encode(answers[i])
            output_hash: bytes32 = keccak256(slice(encoded, 64, 32 * len(answers[i])))
            self.outliers[keccak256(abi_encode(request_id, signers[i]))] = keccak256(
                abi_encode(c.model, c.input_hash, output_hash, block.timestamp)
            )
            log Outlier(request_id=request_id, provider=signers[i], output=answers[i], named_at=block.timestamp)
    assert len(paid) >= majority, "oracle: no majority agrees on the answer"
    self._pay(c.fee, paid)
    self._deliver(request_id, c.consumer, output, paid)


@internal
@pure
def _unpack(packed: Bytes[MAX_REPORT_BYTES], start: uint256, width: uint256) -> DynArray[int256, MAX_OUTPUT]:
    # `width` int256 words of `packed` from byte `start`
    out: DynArray[int256, MAX_OUTPUT] = []
    for j: uint256 in range(MAX_OUTPUT):
        if j >= width:
            break
        out.append(extract32(packed, start + j * 32, output_type=int256))
    return out


@internal
@view
def _open(request_id: uint256, c: Commitment):
    stored: bytes32 = self.commitments[request_id]
    assert stored != empty(bytes32), "oracle: no open request with this id"
    assert stored == keccak256(abi_encode(c)), "oracle: not the request's commitment"


@internal
@view
def _positions(seed: bytes32, request_id: uint256, k: uint256) -> DynArray[uint256, 16]:
    count: uint256 = staticcall registry.active_count()
    assert count >= k, "oracle: fewer active providers than the quorum"
    out: DynArray[uint256, 16] = []
    for j: uint256 in range(MAX_DRAWS):
        if len(out) == k:
            break
        pick: uint256 = convert(keccak256(abi_encode(seed, request_id, j)), uint256) % count
        if pick not in out:
            out.append(pick)
    assert len(out) == k, "oracle: could not draw the committee"
    return out


@internal
@pure
def _median(values: DynArray[int256, MAX_K]) -> int256:
    # insertion sort of at most MAX_K values, then the lower middle one
    s: DynArray[int256, MAX_K] = values
    n: uint256 = len(s)
    for i: uint256 in range(1, MAX_K):
        if i >= n:
            break
        j: uint256 = i
        for _: uint256 in range(MAX_K):
            if j == 0 or s[j - 1] <= s[j]:
                break
            t: int256 = s[j]
            s[j] = s[j - 1]
            s[j - 1] = t
            j -= 1
    return s[(n - 1) // 2]


@internal
@pure
def _agrees(a: DynArray[int256, MAX_OUTPUT], b: DynArray[int256, MAX_OUTPUT]) -> bool:
    for j: uint256 in range(MAX_OUTPUT):
        if j >= len(b):
            break
        d: uint256 = convert(abs(a[j] - b[j]), uint256)
        scale: uint256 = convert(abs(b[j]), uint256) * REL_TOL_PPM // 1_000_000
        if d > max(ABS_TOL, scale):
            return False
    return True


@internal
def _pay(fee: uint256, paid: DynArray[address, MAX_K]):
    # equal shares; the rounding remainder to the first, so nothing is left behind
    n: uint256 = len(paid)
    share: uint256 = fee // n
    for i: uint256 in range(MAX_K):
        if i >= n:
            break
        amount: uint256 = share
        if i == 0:
            amount += fee - share * n
        if amount > 0:
            self.owed[paid[i]] += amount


@internal
def _deliver(request_id: uint256, consumer: address, output: DynArray[int256, MAX_OUTPUT], paid: DynArray[address, MAX_K]):
    # the callback gets CALLBACK_GAS whatever the sender attached: with less than
    # that left (after the 1/64 the EVM keeps back), the whole delivery reverts, so
    # that a sender cannot starve a consumer's callback and still be paid
    assert msg.gas >= CALLBACK_GAS + CALLBACK_GAS // 63 + 10_000, "oracle: not enough gas for the callback"
    ok: bool = False
    if consumer.is_contract:
        ok = raw_call(
            consumer,
            abi_encode(request_id, output, method_id=ON_INFERENCE),
            gas=CALLBACK_GAS,
            revert_on_failure=False,
        )
    log Fulfilled(request_id=request_id, consumer=consumer, output=output, paid=paid, callback_ok=ok)
