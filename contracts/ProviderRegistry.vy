# pragma version ~=0.4.3
"""
@title idlegrid ProviderRegistry
@notice Providers register an endpoint, a price and a capabilities hash, and
        lock a stake of at least `min_stake`. Stake leaves only through an
        unbonding delay (so that cheating found late can still be punished) or
        through `slash`, which only the market may call (and the market only
        for its arbiter, the dispute contract). Unbonded tokens cannot be
        withdrawn while the market reports them locked: they back a channel
        that can still be redeemed or disputed, or an open dispute.
@dev Token accounting: token.balanceOf(self) == sum(stake + unbonding) over
     all providers, always.
"""

from ethereum.ercs import IERC20

import ownable

initializes: ownable

exports: (ownable.owner, ownable.pending_owner, ownable.transfer_ownership, ownable.accept_ownership)


interface IMarket:
    def stake_locked(provider: address) -> bool: view

MAX_ENDPOINT: constant(uint256) = 256
MAX_PAGE: constant(uint256) = 256
# Bounds of the constructor's unbonding delay: long enough for cheating found late to be
# punished (an hour at least), short enough that `block.timestamp + unbonding_delay`
# cannot overflow and a stake is never locked for good (a year at most).
MIN_UNBONDING_DELAY: public(constant(uint256)) = 3600
MAX_UNBONDING_DELAY: public(constant(uint256)) = 365 * 86400


struct Provider:
    endpoint: String[MAX_ENDPOINT]
    price: uint256
    capabilities: bytes32
    stake: uint256
    unbonding: uint256
    withdrawable_at: uint256
    registered: bool


token: public(immutable(IERC20))
min_stake: public(immutable(uint256))
unbonding_delay: public(immutable(uint256))

market: public(address)
providers: public(HashMap[address, Provider])
active_count: public(uint256)
# enumeration of active providers: a dense array with swap-and-pop removal
_active: HashMap[uint256, address]
# position in `_active`, plus one (0 means not active)
_position: HashMap[address, uint256]


event MarketSet:
    market: indexed(address)


event ProviderRegistered:
    provider: indexed(address)
    endpoint: String[MAX_ENDPOINT]
    price: uint256
    capabilities: bytes32
    stake: uint256


event ProviderUpdated:
    provider: indexed(address)
    endpoint: String[MAX_ENDPOINT]
    price: uint256
    capabilities: bytes32


event StakeAdded:
    provider: indexed(address)
    amount: uint256
    stake: uint256


event UnbondingStarted:
    provider: indexed(address)
    amount: uint256
    stake: uint256
    unbonding: uint256
    withdrawable_at: uint256


event StakeWithdrawn:
    provider: indexed(address)
    amount: uint256


event ProviderSlashed:
    provider: indexed(address)
    beneficiary: indexed(address)
    amount: uint256
    stake: uint256
    unbonding: uint256


event ProviderActivated:
    provider: indexed(address)


event ProviderDeactivated:
    provider: indexed(address)


@deploy
def __init__(token_: IERC20, min_stake_: uint256, unbonding_delay_: uint256):
    """
    @param token_ The staking token.
    @param min_stake_ Least stake (in token wei) of an active provider; > 0.
    @param unbonding_delay_ Seconds between `begin_unbonding` and `withdraw`,
           between MIN_UNBONDING_DELAY (1 hour) and MAX_UNBONDING_DELAY (365 days).
    """
    assert min_stake_ > 0, "registry: min stake must be positive"
    assert unbonding_delay_ >= MIN_UNBONDING_DELAY and unbonding_delay_ <= MAX_UNBONDING_DELAY, "registry: unbonding delay out of range"
    ownable.__init__()
    token = token_
    min_stake = min_stake_
    unbonding_delay = unbonding_delay_


@external
def set_market(market_: address):
    """
    @notice Name the market contract, the only caller of `slash`. Owner only, once.
    """
    ownable._check_owner()
    assert self.market == empty(address), "registry: market already set"
    assert market_ != empty(address), "registry: market is the zero address"
    self.market = market_
    log MarketSet(market=market_)


@external
def register(endpoint: String[MAX_ENDPOINT], price: uint256, capabilities: bytes32, stake: uint256):
    """
    @notice Register the caller as a provider and lock `stake` tokens (needs an
            allowance). The provider is active at once.
    @param endpoint URL of the provider's API.
    @param price Tokens (wei) per compute unit.
    @param capabilities Hash of the provider's capability document.
    @param stake At least `min_stake`.
    """
    assert not self.providers[msg.sender].registered, "registry: already registered"
    assert len(endpoint) > 0, "registry: empty endpoint"
    assert stake >= min_stake, "registry: stake below minimum"
    self._pull(stake)
    self.providers[msg.sender] = Provider(
        endpoint=endpoint,
        price=price,
        capabilities=capabilities,
        stake=stake,
        unbonding=0,
        withdrawable_at=0,
        registered=True,
    )
    log ProviderRegistered(
        provider=msg.sender, endpoint=endpoint, price=price, capabilities=capabilities, stake=stake
    )
    self._sync_active(msg.sender)


@external
def update(endpoint: String[MAX_ENDPOINT], price: uint256, capabilities: bytes32):
    """
    @notice Change the caller's endpoint, price and capabilities hash.
    """
    assert self.providers[msg.sender].registered, "registry: not registered"
    assert len(endpoint) > 0, "registry: empty endpoint"
    self.providers[msg.sender].endpoint = endpoint
    self.providers[msg.sender].price = price
    self.providers[msg.sender].capabilities = capabilities
    log ProviderUpdated(provider=msg.sender, endpoint=endpoint, price=price, capabilities=capabilities)


@external
def add_stake(amount: uint256):
    """
    @notice Lock `amount` more tokens as the caller's stake (needs an allowance).
    """
    assert self.providers[msg.sender].registered, "registry: not registered"
    assert amount > 0, "registry: zero amount"
    self._pull(amount)
    stake: uint256 = self.providers[msg.sender].stake + amount
    self.providers[msg.sender].stake = stake
    log StakeAdded(provider=msg.sender, amount=amount, stake=stake)
    self._sync_active(msg.sender)


@external
def begin_unbonding(amount: uint256):
    """
    @notice Move `amount` of the caller's stake to unbonding. It can be
            withdrawn `unbonding_delay` seconds from now and can still be
            slashed until then. A stake that falls below `min_stake` makes the
            provider inactive. Each call restarts the delay for all unbonding tokens.
    """
    assert self.providers[msg.sender].registered, "registry: not registered"
    assert amount > 0, "registry: zero amount"
    stake: uint256 = self.providers[msg.sender].stake
    assert amount <= stake, "registry: amount exceeds stake"
    stake -= amount
    unbonding: uint256 = self.providers[msg.sender].unbonding + amount
    withdrawable_at: uint256 = block.timestamp + unbonding_delay
    self.providers[msg.sender].stake = stake
    self.providers[msg.sender].unbonding = unbonding
    self.providers[msg.sender].withdrawable_at = withdrawable_at
    log UnbondingStarted(
        provider=msg.sender,
        amount=amount,
        stake=stake,
        unbonding=unbonding,
        withdrawable_at=withdrawable_at,
    )
    self._sync_active(msg.sender)


@external
def withdraw():
    """
    @notice Send the caller's unbonded tokens back once the delay has passed.
    """
    amount: uint256 = self.providers[msg.sender].unbonding
    assert amount > 0, "registry: nothing unbonding"
    assert block.timestamp >= self.providers[msg.sender].withdrawable_at, "registry: unbonding delay not over"
    # a provider cannot escape a dispute by leaving: its stake stays while a channel
    # to it can still be redeemed or disputed, or a dispute may still slash it
    market: address = self.market
    if market != empty(address):
        assert not staticcall IMarket(market).stake_locked(msg.sender), "registry: stake backs open channels or disputes"
    self.providers[msg.sender].unbonding = 0
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "registry: token transfer failed"
    log StakeWithdrawn(provider=msg.sender, amount=amount)


@external
def slash(provider: address, amount: uint256, beneficiary: address) -> uint256:
    """
    @notice Take up to `amount` from `provider`'s unbonding tokens, then from
            its stake, and send it to `beneficiary`. Only the market calls this.
    @dev Unbonding tokens go first: they are the ones about to leave. A slash
         takes what is there when `amount` exceeds it rather than reverting, so a
         front-run `begin_unbonding` or `withdraw` cannot void it.
    @return The amount actually taken (0 when the provider holds nothing).
    """
    assert msg.sender == self.market, "registry: caller is not the market"
    assert amount > 0, "registry: zero amount"
    assert beneficiary != empty(address), "registry: beneficiary is the zero address"
    stake: uint256 = self.providers[provider].stake
    unbonding: uint256 = self.providers[provider].unbonding
    taken: uint256 = min(amount, stake + unbonding)
    if taken == 0:
        return 0
    from_unbonding: uint256 = min(taken, unbonding)
    unbonding -= from_unbonding
    stake -= taken - from_unbonding
    self.providers[provider].stake = stake
    self.providers[provider].unbonding = unbonding
    assert extcall token.transfer(beneficiary, taken, default_return_value=True), "registry: token transfer failed"
    log ProviderSlashed(
        provider=provider, beneficiary=beneficiary, amount=taken, stake=stake, unbonding=unbonding
    )
    self._sync_active(provider)
    return taken


@external
@view
def slashable(provider: address) -> uint256:
    """
    @notice What a slash of `provider` can take now: its stake plus its unbonding tokens.
    """
    return self.providers[provider].stake + self.providers[provider].unbonding


@external
@view
def is_active(provider: address) -> bool:
    """
    @notice True when `provider` is registered with at least `min_stake` staked.
    """
    return self._position[provider] != 0


@external
@view
def active_providers(offset: uint256, limit: uint256) -> DynArray[address, MAX_PAGE]:
    """
    @notice Up to `limit` (at most 256) active providers from position `offset`.
            Order changes when providers leave (swap-and-pop).
    """
    result: DynArray[address, MAX_PAGE] = []
    count: uint256 = self.active_count
    for i: uint256 in range(MAX_PAGE):
        if i >= limit or offset + i >= count:
            break
        result.append(self._active[offset + i])
    return result


@external
@view
def active_at(positions: DynArray[uint256, 16]) -> DynArray[address, 16]:
    """
    @notice The active providers at `positions` (each below `active_count`), in that
            order: an oracle committee in one call.
    """
    count: uint256 = self.active_count
    result: DynArray[address, 16] = []
    for p: uint256 in positions:
        assert p < count, "registry: no active provider at that position"
        result.append(self._active[p])
    return result


@internal
def _pull(amount: uint256):
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "registry: token transfer failed"


@internal
def _sync_active(provider: address):
    # keeps the active set equal to {registered and stake >= min_stake}
    should: bool = self.providers[provider].registered and self.providers[provider].stake >= min_stake
    position: uint256 = self._position[provider]
    if should and position == 0:
        count: uint256 = self.active_count
        self._active[count] = provider
        self._position[provider] = count + 1
        self.active_count = count + 1
        log ProviderActivated(provider=provider)
    elif not should and position != 0:
        last: uint256 = self.active_count - 1
        moved: address = self._active[last]
        self._active[position - 1] = moved
        self._position[moved] = position
        self._active[last] = empty(address)
        self._position[provider] = 0
        self.active_count = last
        log ProviderDeactivated(provider=provider)
