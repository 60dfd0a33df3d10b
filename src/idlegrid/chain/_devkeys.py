"""The well-known development accounts shared by anvil, hardhat and our embedded chain."""

from __future__ import annotations

from functools import cache

from eth_account import Account as _EthAccount

from ..protocol import Account

__all__ = ["DEV_MNEMONIC", "dev_accounts"]

#: anvil's default mnemonic; never hold real value with these keys
DEV_MNEMONIC = "test test test test test test test test test test test junk"


@cache
def _dev_key(index: int) -> bytes:
    _EthAccount.enable_unaudited_hdwallet_features()
    acct = _EthAccount.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return bytes(acct.key)


def dev_accounts(count: int) -> list[Account]:
    """The first ``count`` accounts of :data:`DEV_MNEMONIC`."""
    return [Account.from_key(_dev_key(i)) for i in range(count)]
