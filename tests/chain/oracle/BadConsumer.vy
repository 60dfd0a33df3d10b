# pragma version ~=0.4.3
"""
@title BadConsumer
@notice A consumer whose callback reverts, or burns all its gas: the oracle must
        deliver, pay its providers and go on all the same (a test's contract).
"""

interface IOracle:
    def request(model: bytes32, input: DynArray[int256, 64], mode: uint8, fee: uint256) -> uint256: nonpayable

interface IToken:
    def approve(spender: address, amount: uint256) -> bool: nonpayable

burn: public(bool)
calls: public(uint256)


@external
def ask(oracle: IOracle, token: IToken, model: bytes32, input: DynArray[int256, 64], fee: uint256, burn_: bool) -> uint256:
    self.burn = burn_
    extcall token.approve(oracle.address, fee)
    return extcall oracle.request(model, input, 0, fee)


@external
def onInference(request_id: uint256, output: DynArray[int256, 16]):
    if self.burn:
        for i: uint256 in range(100_000):
            self.calls += 1
    raise "consumer: no thanks"
