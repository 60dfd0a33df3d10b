# pragma version ~=0.4.3
"""
@title AnswerStore
@notice The smallest useful consumer of the idlegrid oracle: it asks, and keeps the
        first output of each answer and its request id. `idlegrid bench oracle`
        measures the oracle's gas with it (the callback's own work is two storage
        words).
"""

from ethereum.ercs import IERC20


interface IOracle:
    def request(model: bytes32, input: DynArray[int256, 64], mode: uint8, fee: uint256) -> uint256: nonpayable


oracle: public(immutable(IOracle))
answer: public(int256)
answered: public(uint256)


@deploy
def __init__(oracle_: IOracle, token: IERC20):
    """
    @param oracle_ The IdlegridOracle.
    @param token The network's token: the oracle may pull fees from this contract.
    """
    oracle = oracle_
    extcall token.approve(oracle_.address, max_value(uint256))


@external
def ask(model: bytes32, input: DynArray[int256, 64], mode: uint8, fee: uint256) -> uint256:
    """
    @notice Ask for `model`'s answer on `input` (mode 0: a quorum; 1: a zk proof), the
            fee from this contract.
    """
    return extcall oracle.request(model, input, mode, fee)


@external
def onInference(request_id: uint256, output: DynArray[int256, 16]):
    """
    @notice The oracle's answer: keep its first output.
    """
    assert msg.sender == oracle.address, "store: only the oracle answers"
    self.answer = output[0]
    self.answered = request_id
