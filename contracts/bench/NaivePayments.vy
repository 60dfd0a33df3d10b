# pragma version ~=0.4.3
"""
@title NaivePayments (benchmark baseline)
@notice What settlement costs without channels: each job paid by its own
        ERC-20 transfer, plus the same per-provider contribution record the
        JobMarket keeps. Used only by `idlegrid bench settlement`.
"""

from ethereum.ercs import IERC20

MASK_96: constant(uint256) = 2**96 - 1
MASK_56: constant(uint256) = 2**56 - 1

token: public(immutable(IERC20))
_record: HashMap[address, uint256]


event JobPaid:
    client: indexed(address)
    provider: indexed(address)
    amount: uint256
    units: uint256


@deploy
def __init__(token_: IERC20):
    token = token_


@external
def pay_job(provider: address, amount: uint256, units: uint256):
    """
    @notice Pay `provider` for one job straight from the caller's wallet and
            record the contribution.
    """
    assert extcall token.transferFrom(msg.sender, provider, amount, default_return_value=True), "naive: token transfer failed"
    record: uint256 = self._record[provider]
    self._record[provider] = ((record & MASK_96) + amount) | ((((record >> 96) & MASK_56) + 1) << 96) | (((record >> 152) + units) << 152)
    log JobPaid(client=msg.sender, provider=provider, amount=amount, units=units)
