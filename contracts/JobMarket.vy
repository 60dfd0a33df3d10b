# pragma version ~=0.4.3
"""
@title idlegrid JobMarket
@notice Escrow accounts and unidirectional payment channels from clients to
        providers. A client locks a deposit in a channel and signs EIP-712
        vouchers off-chain, each carrying cumulative amount, jobs, compute units
        and the Merkle root of all job receipts so far. The provider redeems the
        latest voucher whenever it likes and is credited only the increase; the
        contract records per provider cumulative jobs, units and tokens earned.
        After expiry plus `close_window` the client may close the channel and
        take back what was not redeemed. No statistic ever blocks a payment: the
        record's counters saturate at their widths.
@dev Gas layout. A channel's immutable terms (client, provider, deposit,
     expiry, salt) are not stored: they are hashed into the channel id and
     passed back by callers, so opening a channel writes one storage slot.
     Mutable channel state, provider records and top-ups are bit-packed:
       state  = paid:96 | jobs:48 | units:104 | flags:8
       record = earned:96 | jobs:56 | units:104
       topup  = extra deposit:96 | expiry:64
     Token amounts fit 96 bits because the token caps supply at 2**96 - 1.
     Earnings stay in the provider's record and are swept into its balance
     only when it spends or withdraws, so a redemption writes two slots
     (channel state and record), not three.
     Token accounting: token.balanceOf(self) == sum over accounts of
     balance_of(account) + sum over open channels of (deposit + top-ups - paid),
     always, where balance_of = _balances + earned - _swept.
     Bounds: `close_window` lies in [MIN_CLOSE_WINDOW, MAX_CLOSE_WINDOW] and an
     expiry at most MAX_CHANNEL_TTL ahead, so `expiry + close_window` never
     overflows and no deposit is locked for longer than a year and a month
     without the client's renewed say (a top-up).
     Disputes. The market stores no receipts root: a dispute presents the
     client-signed voucher whose root holds the receipt, and checks with
     `voucher_digest` and `channel` that the client signed it and that the
     channel paid at least its amount (so it, or a later voucher, was
     redeemed). Per provider the market keeps the latest
     `expiry + close_window` of the channels opened or topped up to it,
     rounded up to a whole day (`stake_locked` adds the arbiter's
     dispute window): the registry lets no stake leave before then, nor while
     the arbiter has a dispute open that may slash the provider. Redeeming a
     voucher that pays nothing reverts, so a record cannot be pumped for free.
     The arbiter (the dispute contract) is set once, at deployment; it is the
     only route to a slash.
"""

from ethereum.ercs import IERC20

import ecdsa
import eip712
import ownable

initializes: ownable
initializes: eip712

exports: (ownable.owner, ownable.pending_owner, ownable.transfer_ownership, ownable.accept_ownership, eip712.DOMAIN_SEPARATOR)


interface IRegistry:
    def slash(provider: address, amount: uint256, beneficiary: address) -> uint256: nonpayable


interface IRoyalties:
    def pay_royalty(model: bytes32, amount: uint256): nonpayable


interface IArbiter:
    def dispute_window() -> uint256: view
    def pending(provider: address) -> uint256: view


MASK_96: constant(uint256) = 2**96 - 1
MASK_48: constant(uint256) = 2**48 - 1
MASK_56: constant(uint256) = 2**56 - 1
MASK_64: constant(uint256) = 2**64 - 1
MASK_104: constant(uint256) = 2**104 - 1
FLAG_OPEN: constant(uint256) = 2**248
FLAG_CLOSED: constant(uint256) = 2**249
FLAG_TOPPED_UP: constant(uint256) = 2**250
MAX_PROOF: constant(uint256) = 64
# Bounds of the constructor's close window: a provider needs time to redeem its last
# voucher after expiry (an hour at least), and a client must get an unredeemed rest
# back in a month at most after expiry.
MIN_CLOSE_WINDOW: public(constant(uint256)) = 3600
MAX_CLOSE_WINDOW: public(constant(uint256)) = 30 * 86400
# How far ahead of the current block an expiry may lie (opening or topping up): a
# typo (a time in milliseconds) must not lock a deposit for millennia.
MAX_CHANNEL_TTL: public(constant(uint256)) = 365 * 86400
# A provider's withdrawal lock moves in whole days: opening many channels to it in a
# day writes the lock once, and every other open only reads it (see `_lock`).
LOCK_GRANULARITY: public(constant(uint256)) = 86400

VOUCHER_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Voucher(bytes32 channel,uint256 amount,uint256 jobs,uint256 units,bytes32 receiptsRoot,bytes32 royalties)"
)
# models whose usage royalties one channel's vouchers may carry
MAX_ROYALTIES: public(constant(uint256)) = 16


struct Royalty:
    # a registered model, and what this channel owes its lineage so far (cumulative)
    model: bytes32
    amount: uint256


struct Terms:
    client: address
    provider: address
    deposit: uint256
    expiry: uint256
    salt: uint256


token: public(immutable(IERC20))
registry: public(immutable(IRegistry))
close_window: public(immutable(uint256))

# the dispute contract, the only caller of `slash`; set once (`set_arbiter`)
arbiter: public(address)
# free balances held for accounts: deposits, refunds and swept earnings
_balances: HashMap[address, uint256]
# how much of a provider's earned total has been swept into _balances
_swept: HashMap[address, uint256]
_state: HashMap[bytes32, uint256]
_topup: HashMap[bytes32, uint256]
_record: HashMap[address, uint256]
# latest `expiry + close_window` of the channels opened or topped up to a provider,
# rounded up to the next whole day
_locked_until: HashMap[address, uint256]
# the RewardPool that takes usage royalties to models' lineages; set once
royalty_pool: public(address)
# royalties paid so far, by keccak256(channel, model)
_royalties_paid: HashMap[bytes32, uint256]


event Deposited:
    account: indexed(address)
    amount: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


event ChannelOpened:
    channel: indexed(bytes32)
    client: indexed(address)
    provider: indexed(address)
    deposit: uint256
    expiry: uint256
    salt: uint256


event ChannelToppedUp:
    channel: indexed(bytes32)
    amount: uint256
    deposit: uint256
    expiry: uint256


event VoucherRedeemed:
    channel: indexed(bytes32)
    provider: indexed(address)
    amount: uint256
    paid: uint256
    jobs: uint256
    units: uint256
    receipts_root: bytes32


event ChannelClosed:
    channel: indexed(bytes32)
    client: indexed(address)
    provider: indexed(address)
    refund: uint256


event ArbiterSet:
    arbiter: indexed(address)

event RoyaltyPoolSet:
    pool: indexed(address)


@deploy
def __init__(token_: IERC20, registry_: IRegistry, close_window_: uint256):
    """
    @param token_ The payment token.
    @param registry_ The provider registry whose stakes `slash` takes.
    @param close_window_ Seconds after a channel's expiry during which only
           the provider may act (redeem); then the client may close. Between
           MIN_CLOSE_WINDOW (1 hour) and MAX_CLOSE_WINDOW (30 days).
    """
    assert close_window_ >= MIN_CLOSE_WINDOW and close_window_ <= MAX_CLOSE_WINDOW, "market: close window out of range"
    ownable.__init__()
    eip712.__init__("idlegrid JobMarket")
    token = token_
    registry = registry_
    close_window = close_window_


@external
def set_arbiter(arbiter_: address):
    """
    @notice Name the dispute contract, the only caller of `slash`. Owner only,
            once: the deployment wires it, and no key can ever point it
            elsewhere (say, at itself, to take every provider's stake).
    """
    ownable._check_owner()
    assert self.arbiter == empty(address), "market: arbiter already set"
    assert arbiter_ != empty(address), "market: arbiter is the zero address"
    self.arbiter = arbiter_
    log ArbiterSet(arbiter=arbiter_)


@external
def set_royalty_pool(pool: address):
    """
    @notice Name the RewardPool that receives vouchers' usage royalties (its
            `pay_royalty`). Owner only, once: the deployment wires it.
    """
    ownable._check_owner()
    assert self.royalty_pool == empty(address), "market: royalty pool already set"
    assert pool != empty(address), "market: royalty pool is the zero address"
    self.royalty_pool = pool
    log RoyaltyPoolSet(pool=pool)


@external
def deposit(amount: uint256):
    """
    @notice Move `amount` tokens from the caller's wallet to its market balance
            (needs an allowance).
    """
    assert amount > 0, "market: zero amount"
    self._pull(msg.sender, amount)
    self._balances[msg.sender] += amount
    log Deposited(account=msg.sender, amount=amount)


@external
def withdraw(amount: uint256):
    """
    @notice Send `amount` of the caller's market balance to its wallet.
    """
    assert amount > 0, "market: zero amount"
    balance: uint256 = self._balances[msg.sender]
    if balance < amount:
        balance = self._sweep(msg.sender, balance)
    assert balance >= amount, "market: insufficient balance"
    self._balances[msg.sender] = balance - amount
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "market: token transfer failed"
    log Withdrawn(account=msg.sender, amount=amount)


@external
def open_channel(provider: address, amount: uint256, expiry: uint256, salt: uint256) -> bytes32:
    """
    @notice Open a channel from the caller to `provider` holding `amount`
            tokens, taken from the caller's market balance and, for any
            shortfall, from its wallet (needs an allowance).
    @param expiry Unix time after which (plus `close_window`) the client may close;
           later than now and at most MAX_CHANNEL_TTL (365 days) ahead.
    @param salt Any number that makes the channel id unique among channels
           with the same terms.
    @return The channel id, keccak256(abi_encode(client, provider, amount, expiry, salt)).
    """
    assert provider != empty(address), "market: provider is the zero address"
    assert provider != msg.sender, "market: channel to self"
    assert amount > 0, "market: zero deposit"
    assert amount <= MASK_96, "market: deposit too large"
    assert expiry > block.timestamp, "market: expiry in the past"
    assert expiry <= block.timestamp + MAX_CHANNEL_TTL, "market: expiry too far ahead"
    assert expiry <= MASK_64, "market: expiry too large"
    channel: bytes32 = self._channel_id(msg.sender, provider, amount, expiry, salt)
    assert self._state[channel] == 0, "market: channel exists"
    self._debit(msg.sender, amount)
    self._state[channel] = FLAG_OPEN
    self._lock(provider, expiry)
    log ChannelOpened(
        channel=channel, client=msg.sender, provider=provider, deposit=amount, expiry=expiry, salt=salt
    )
    return channel


@external
def top_up(terms: Terms, amount: uint256, expiry: uint256):
    """
    @notice Add `amount` tokens to an open channel of the caller's and set its
            expiry to `expiry` (never earlier than the current one, at most
            MAX_CHANNEL_TTL ahead of now unless it is the current one).
    """
    assert msg.sender == terms.client, "market: caller is not the channel's client"
    channel: bytes32 = self._id(terms)
    state: uint256 = self._state[channel]
    assert state & FLAG_OPEN != 0, "market: unknown channel"
    assert state & FLAG_CLOSED == 0, "market: channel closed"
    deposit: uint256 = 0
    current: uint256 = 0
    deposit, current = self._effective(channel, state, terms)
    assert expiry >= current, "market: expiry earlier than current"
    # keeping the current expiry is always allowed: a top-up never has to shorten it
    assert expiry == current or expiry <= block.timestamp + MAX_CHANNEL_TTL, "market: expiry too far ahead"
    assert expiry <= MASK_64, "market: expiry too large"
    # deposit <= MASK_96 already, so this cannot underflow, and deposit + amount cannot overflow
    assert amount <= MASK_96 - deposit, "market: deposit too large"
    deposit += amount
    self._debit(msg.sender, amount)
    self._topup[channel] = (deposit - terms.deposit) | (expiry << 96)
    self._lock(terms.provider, expiry)
    self._state[channel] = state | FLAG_TOPPED_UP
    log ChannelToppedUp(channel=channel, amount=amount, deposit=deposit, expiry=expiry)


@external
def redeem(
    terms: Terms,
    amount: uint256,
    jobs: uint256,
    units: uint256,
    receipts_root: bytes32,
    royalties: DynArray[Royalty, MAX_ROYALTIES],
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice Redeem a voucher signed by the channel's client. The provider (the
            only caller) is credited `amount` minus what it was already paid,
            less the increase of the voucher's royalty lines, which goes to
            each model's lineage in the RewardPool (`pay_royalty`); its record
            grows by what it earned and by the increase in jobs and units
            (each counter saturates at its width; see `record`).
    @param amount Cumulative tokens owed on this channel (royalties included).
    @param jobs Cumulative jobs done on this channel.
    @param units Cumulative compute units done on this channel.
    @param receipts_root Merkle root of all job receipts of this channel so far.
    @param royalties Cumulative royalties owed by this channel's jobs, by model
           in ascending order (the client signs their hash; empty: none).
    """
    assert msg.sender == terms.provider, "market: caller is not the channel's provider"
    channel: bytes32 = self._id(terms)
    state: uint256 = self._state[channel]
    assert state & FLAG_OPEN != 0, "market: unknown channel"
    assert state & FLAG_CLOSED == 0, "market: channel closed"
    paid: uint256 = state & MASK_96
    done_jobs: uint256 = (state >> 96) & MASK_48
    done_units: uint256 = (state >> 144) & MASK_104
    assert amount >= paid and jobs >= done_jobs and units >= done_units, "market: stale voucher"
    assert amount > paid or jobs > done_jobs or units > done_units, "market: voucher already redeemed"
    # a voucher that pays nothing would count jobs and units for free (a record pumped
    # by a second address acting as client): only a payment moves the record
    assert amount > paid, "market: voucher pays nothing"
    deposit: uint256 = terms.deposit
    if state & FLAG_TOPPED_UP != 0:
        deposit += self._topup[channel] & MASK_96
    assert amount <= deposit, "market: voucher exceeds channel deposit"
    assert jobs <= MASK_48, "market: jobs too large"
    assert units <= MASK_104, "market: units too large"
    assert convert(s, uint256) <= ecdsa.SECP256K1_HALF_N, "market: malleable voucher signature"
    digest: bytes32 = self._voucher_digest(channel, amount, jobs, units, receipts_root, self._royalties_hash(royalties))
    assert ecdsa._recover(digest, v, r, s) == terms.client, "market: voucher not signed by the channel's client (wrong signer, chain or contract)"

    self._state[channel] = (state & ~MASK_96 & ~(MASK_48 << 96) & ~(MASK_104 << 144)) | amount | (jobs << 96) | (units << 144)
    earned: uint256 = amount - paid
    if len(royalties) != 0:
        earned -= self._pay_royalties(channel, royalties, earned)
    record: uint256 = self._record[msg.sender]
    record_earned: uint256 = (record & MASK_96) + earned
    record_jobs: uint256 = ((record >> 96) & MASK_56) + jobs - done_jobs
    record_units: uint256 = (record >> 152) + units - done_units
    # Money is never blocked by a statistic: the counters saturate. Lifetime earnings
    # can pass 2**96 - 1 only as tokens circulate (the supply is capped there); the
    # record's earned stops at 2**96 - 1 and the excess is credited straight to the
    # balance, so balance_of (_balances + earned - _swept) still grows by `earned`.
    # Rare, so the usual redemption still writes two slots.
    if record_earned > MASK_96:
        self._balances[msg.sender] += record_earned - MASK_96
        record_earned = MASK_96
    record_jobs = min(record_jobs, MASK_56)
    record_units = min(record_units, MASK_104)
    self._record[msg.sender] = record_earned | (record_jobs << 96) | (record_units << 152)
    log VoucherRedeemed(
        channel=channel,
        provider=msg.sender,
        amount=earned,
        paid=amount,
        jobs=jobs,
        units=units,
        receipts_root=receipts_root,
    )


@external
def close(terms: Terms):
    """
    @notice Close a channel and refund what was not redeemed to the client's
            market balance. The client may do so once `expiry + close_window`
            has passed; the provider may do so at any time (it gives up
            vouchers it has not redeemed).
    """
    assert msg.sender == terms.client or msg.sender == terms.provider, "market: caller is not a party of the channel"
    channel: bytes32 = self._id(terms)
    state: uint256 = self._state[channel]
    assert state & FLAG_OPEN != 0, "market: unknown channel"
    assert state & FLAG_CLOSED == 0, "market: channel closed"
    deposit: uint256 = 0
    expiry: uint256 = 0
    deposit, expiry = self._effective(channel, state, terms)
    if msg.sender == terms.client:
        assert block.timestamp >= expiry + close_window, "market: channel not expired or still in its redeem window"
    refund: uint256 = deposit - (state & MASK_96)
    self._state[channel] = state | FLAG_CLOSED
    if refund > 0:
        self._balances[terms.client] += refund
    log ChannelClosed(channel=channel, client=terms.client, provider=terms.provider, refund=refund)


@external
def slash(provider: address, amount: uint256, beneficiary: address) -> uint256:
    """
    @notice Slash up to `amount` of `provider`'s stake in the registry to
            `beneficiary`. Only the arbiter (the dispute contract) calls this.
    @return The amount actually taken (the registry takes what is there).
    """
    assert msg.sender == self.arbiter, "market: caller is not the arbiter"
    return extcall registry.slash(provider, amount, beneficiary)


@external
@view
def locked_until(provider: address) -> uint256:
    """
    @notice The latest `expiry + close_window` of the channels opened or
            topped up to `provider`, rounded up to the next whole day
            (LOCK_GRANULARITY): until then it may still redeem.
    """
    return self._locked_until[provider]


@external
@view
def stake_locked(provider: address) -> bool:
    """
    @notice True while `provider`'s stake must stay in the registry: a channel
            to it can still be redeemed or disputed (`locked_until` plus the
            arbiter's dispute window), or the arbiter has a dispute open that
            may slash it.
    """
    until: uint256 = self._locked_until[provider]
    arbiter: address = self.arbiter
    if arbiter != empty(address):
        if staticcall IArbiter(arbiter).pending(provider) > 0:
            return True
        until += staticcall IArbiter(arbiter).dispute_window()
    return block.timestamp < until


@external
@view
def channel(terms: Terms) -> (bytes32, uint256, uint256, uint256, uint256, uint256, bool, bool):
    """
    @notice A channel's state: (id, deposit incl. top-ups, expiry, paid, jobs,
            units, open, closed). `open` is False for an unknown channel.
    """
    channel: bytes32 = self._id(terms)
    state: uint256 = self._state[channel]
    deposit: uint256 = 0
    expiry: uint256 = 0
    deposit, expiry = self._effective(channel, state, terms)
    return (
        channel,
        deposit,
        expiry,
        state & MASK_96,
        (state >> 96) & MASK_48,
        (state >> 144) & MASK_104,
        state & FLAG_OPEN != 0 and state & FLAG_CLOSED == 0,
        state & FLAG_CLOSED != 0,
    )


@external
@view
def balance_of(account: address) -> uint256:
    """
    @notice Tokens held for `account` in the market, free to spend on
            channels or withdraw: deposits, refunds and earnings.
    """
    return self._balances[account] + (self._record[account] & MASK_96) - self._swept[account]


@external
@view
def record(provider: address) -> (uint256, uint256, uint256):
    """
    @notice A provider's contribution: cumulative (tokens earned, jobs, units).
            Each counter saturates at its width (earned 2**96 - 1, jobs
            2**56 - 1, units 2**104 - 1) and then stays there; payments go on.
    """
    record: uint256 = self._record[provider]
    return (record & MASK_96, (record >> 96) & MASK_56, record >> 152)


@external
@pure
def channel_id(terms: Terms) -> bytes32:
    """
    @notice The id of the channel with these terms.
    """
    return self._id(terms)


@external
@view
def voucher_digest(channel: bytes32, amount: uint256, jobs: uint256, units: uint256, receipts_root: bytes32, royalties: bytes32) -> bytes32:
    """
    @notice The EIP-712 digest a client signs for this voucher (the dispute
            contract reads it to check a voucher presented as evidence).
    @param royalties The hash of the voucher's royalty lines (`royalties_hash`).
    """
    return self._voucher_digest(channel, amount, jobs, units, receipts_root, royalties)


@external
@pure
def royalties_hash(royalties: DynArray[Royalty, MAX_ROYALTIES]) -> bytes32:
    """
    @notice What a voucher signs of its royalty lines: zero for none, else the
            chain h = keccak256(h, model, amount) from h = 0.
    """
    return self._royalties_hash(royalties)


@external
@view
def royalties_paid(channel: bytes32, model: bytes32) -> uint256:
    """
    @notice Royalties the channel's redeemed vouchers have paid `model`'s lineage.
    """
    return self._royalties_paid[keccak256(concat(channel, model))]


@external
@pure
def verify_receipt(leaf: bytes32, proof: DynArray[bytes32, MAX_PROOF], root: bytes32) -> bool:
    """
    @notice True when `leaf` is in the Merkle tree with `root` (sorted-pair
            keccak256 hashing, the same as `idlegrid.protocol.merkle`). The root
            is authenticated by the client's signature on a voucher.
    """
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    return node == root


@internal
@pure
def _channel_id(client: address, provider: address, deposit: uint256, expiry: uint256, salt: uint256) -> bytes32:
    return keccak256(abi_encode(client, provider, deposit, expiry, salt))


@internal
@pure
def _id(terms: Terms) -> bytes32:
    return self._channel_id(terms.client, terms.provider, terms.deposit, terms.expiry, terms.salt)


@internal
@view
def _effective(channel: bytes32, state: uint256, terms: Terms) -> (uint256, uint256):
    # (deposit, expiry) after any top-up
    if state & FLAG_TOPPED_UP == 0:
        return (terms.deposit, terms.expiry)
    topup: uint256 = self._topup[channel]
    return (terms.deposit + (topup & MASK_96), topup >> 96)


@internal
@view
def _voucher_digest(channel: bytes32, amount: uint256, jobs: uint256, units: uint256, receipts_root: bytes32, royalties: bytes32) -> bytes32:
    struct_hash: bytes32 = keccak256(abi_encode(VOUCHER_TYPEHASH, channel, amount, jobs, units, receipts_root, royalties))
    return eip712._hash_typed_data(struct_hash)


@internal
@pure
def _royalties_hash(royalties: DynArray[Royalty, MAX_ROYALTIES]) -> bytes32:
    h: bytes32 = empty(bytes32)
    for line: Royalty in royalties:
        h = keccak256(concat(h, line.model, convert(line.amount, bytes32)))
    return h


@internal
def _pay_royalties(channel: bytes32, royalties: DynArray[Royalty, MAX_ROYALTIES], earned: uint256) -> uint256:
    # Pay each line's increase since the channel's last redemption to the model's
    # lineage (the pool pulls it from the market's tokens); return their sum, which
    # the voucher's increase must cover.
    pool: address = self.royalty_pool
    assert pool != empty(address), "market: no royalty pool to pay royalties to"
    previous: uint256 = 0
    due: DynArray[uint256, MAX_ROYALTIES] = []
    total: uint256 = 0
    for line: Royalty in royalties:
        assert convert(line.model, uint256) > previous, "market: royalty lines not in ascending model order"
        previous = convert(line.model, uint256)
        key: bytes32 = keccak256(concat(channel, line.model))
        before: uint256 = self._royalties_paid[key]
        assert line.amount >= before, "market: stale royalty line"
        due.append(line.amount - before)
        total += line.amount - before
        if line.amount != before:
            self._royalties_paid[key] = line.amount
    assert total <= earned, "market: royalties exceed what the voucher pays"
    if total == 0:
        return 0
    assert extcall token.approve(pool, total, default_return_value=True), "market: token approval failed"
    for i: uint256 in range(len(royalties), bound=MAX_ROYALTIES):
        if due[i] != 0:
            extcall IRoyalties(pool).pay_royalty(royalties[i].model, due[i])
    return total


@internal
def _lock(provider: address, expiry: uint256):
    # written only when it moves to a later day: one cold read on most opens, a write
    # at most once a day per provider (and for its first channel). Rounding up holds a
    # stake a day longer at most, never shorter.
    until: uint256 = (expiry + close_window) // LOCK_GRANULARITY * LOCK_GRANULARITY + LOCK_GRANULARITY
    if until > self._locked_until[provider]:
        self._locked_until[provider] = until


@internal
def _debit(account: address, amount: uint256):
    # spend the market balance first; pull any shortfall from the wallet
    balance: uint256 = self._balances[account]
    if balance < amount:
        balance = self._sweep(account, balance)
    if balance >= amount:
        self._balances[account] = balance - amount
        return
    if balance > 0:
        self._balances[account] = 0
    self._pull(account, amount - balance)


@internal
def _sweep(account: address, balance: uint256) -> uint256:
    # move earnings not yet swept into the balance; returns the new balance,
    # which the caller must store
    earned: uint256 = self._record[account] & MASK_96
    swept: uint256 = self._swept[account]
    if earned == swept:
        return balance
    self._swept[account] = earned
    return balance + earned - swept


@internal
def _pull(account: address, amount: uint256):
    assert extcall token.transferFrom(account, self, amount, default_return_value=True), "market: token transfer failed"
