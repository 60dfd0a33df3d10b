"""Gas estimates for the embedded chain (py-evm) in two executions instead of a dozen.

py-evm estimates by bisection: it runs the transaction at the intrinsic gas, at the
block's gas limit, then at the midpoints until the range is narrower than 21,000 gas:
thirteen executions of the transaction at a 30M block gas limit, in a pure-Python EVM.
The estimate is most of what a transaction costs on the embedded chain (58 % of the
ledger invariant test's CPU, measured with py-spy).

:func:`estimate_gas` runs it once at the block's gas limit and reads the gas it used
before refunds; then once more with that plus an eighth (for the 1/64 of the gas each
call keeps back, EIP-150, down several levels of calls). If that second run succeeds,
that is the estimate: a limit the transaction was seen to succeed with, as bisection's
is. If it fails (a deeper call chain, a contract that branches on ``gasleft()``),
bisection decides, as before. Reverts raise py-evm's error, as bisection does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["estimate_gas", "install"]

#: the margin over the gas used that the second run tries (an eighth)
MARGIN_DIVISOR = 8


def _run(state: Any, transaction: Any, gas: int) -> Any:
    """The computation of ``transaction`` with ``gas``; the state is left as it was."""
    from eth.vm.spoof import SpoofTransaction

    snapshot = state.snapshot()
    try:
        return state.apply_transaction(SpoofTransaction(transaction, gas=gas, gas_price=0))
    finally:
        state.revert(snapshot)


def estimate_gas(state: Any, transaction: Any) -> int:
    """A gas limit ``transaction`` succeeds with on ``state`` (py-evm's estimator
    interface: ``Chain.gas_estimator``)."""
    from eth.estimators.gas import binary_gas_search_intrinsic_tolerance

    limit = int(state.gas_limit)
    full = _run(state, transaction, limit)
    if full.is_error:
        raise full.error
    used = limit - int(full.get_gas_remaining())  # intrinsic + execution, before refunds
    guess = used + used // MARGIN_DIVISOR
    if guess < limit and not _run(state, transaction, guess).is_error:
        return guess
    return int(binary_gas_search_intrinsic_tolerance(state, transaction))


def install(chain: Any) -> None:
    """Make :func:`estimate_gas` ``chain``'s estimator, and that of the chains eth-tester
    makes of its class (reverting to the genesis block makes a new one)."""
    type(chain).gas_estimator = staticmethod(estimate_gas)
    chain.gas_estimator = estimate_gas
