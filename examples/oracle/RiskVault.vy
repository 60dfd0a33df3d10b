# pragma version ~=0.4.3
"""
@title RiskVault
@notice An example consumer of the idlegrid oracle: a vault that asks a
        registered risk model before each rebalance and stores the answer.
        `rebalance(features, fee)` (the owner) pays the oracle `fee` from the
        vault's own tokens and asks for the model's answer on `features`; the
        oracle calls back `onInference`, and the vault keeps the risk score and
        moves its target allocation: the riskier, the less it holds at risk.
@dev The callback runs with the oracle's fixed CALLBACK_GAS (200,000); this one
     uses about 30,000. Only the oracle may call it, only for the request in
     flight. Inputs and outputs are fixed point with 18 decimals.
"""

from ethereum.ercs import IERC20


interface IOracle:
    def request(model: bytes32, input: DynArray[int256, 64], mode: uint8, fee: uint256) -> uint256: nonpayable


# the share held at risk (basis points) when the model says risk 0, and when it says 1
MAX_AT_RISK_BPS: constant(int256) = 8_000
MIN_AT_RISK_BPS: constant(int256) = 1_000
ONE: constant(int256) = 10**18

event RebalanceAsked:
    request_id: indexed(uint256)
    fee: uint256

event Rebalanced:
    request_id: indexed(uint256)
    risk: int256
    at_risk_bps: int256


oracle: public(immutable(IOracle))
token: public(immutable(IERC20))
owner: public(immutable(address))
model: public(bytes32)
mode: public(uint8)
# the request the vault waits for (0: none)
pending: public(uint256)
# the last risk score (18 decimals) and the allocation it set
risk: public(int256)
at_risk_bps: public(int256)
rebalances: public(uint256)


@deploy
def __init__(oracle_: IOracle, token_: IERC20, model_: bytes32, mode_: uint8):
    """
    @param oracle_ The IdlegridOracle.
    @param token_ The network's token (the vault pays the oracle's fees in it).
    @param model_ The sha256 of the registered risk model.
    @param mode_ 0: a quorum of providers answers; 1: one provider with a zk proof.
    """
    oracle = oracle_
    token = token_
    owner = msg.sender
    self.model = model_
    self.mode = mode_
    self.at_risk_bps = MAX_AT_RISK_BPS


@external
def rebalance(features: DynArray[int256, 64], fee: uint256) -> uint256:
    """
    @notice Ask the risk model about `features` before rebalancing (the owner only).
    """
    assert msg.sender == owner, "vault: only the owner rebalances"
    assert self.pending == 0, "vault: a rebalance is in flight"
    assert extcall token.approve(oracle.address, fee, default_return_value=True), "vault: approve failed"
    request_id: uint256 = extcall oracle.request(self.model, features, self.mode, fee)
    self.pending = request_id
    log RebalanceAsked(request_id=request_id, fee=fee)
    return request_id


@external
def onInference(request_id: uint256, output: DynArray[int256, 16]):
    """
    @notice The oracle's answer: the first output is the risk score in [0, 1].
    """
    assert msg.sender == oracle.address, "vault: only the oracle answers"
    assert request_id == self.pending, "vault: not the request in flight"
    risk: int256 = min(max(output[0], 0), ONE)
    bps: int256 = MAX_AT_RISK_BPS - (MAX_AT_RISK_BPS - MIN_AT_RISK_BPS) * risk // ONE
    self.risk = risk
    self.at_risk_bps = bps
    self.pending = 0
    self.rebalances += 1
    log Rebalanced(request_id=request_id, risk=risk, at_risk_bps=bps)


@external
def forget():
    """
    @notice Stop waiting for a request (the owner, after cancelling it at the oracle).
    """
    assert msg.sender == owner, "vault: only the owner"
    self.pending = 0
