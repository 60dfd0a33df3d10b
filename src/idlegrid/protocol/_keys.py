"""Accounts: an Ethereum address and the private key that controls it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from eth_account import Account as _EthAccount
from eth_utils import to_checksum_address

from .._exceptions import ConfigError, InvalidInput

__all__ = ["KEY_ENV", "Account", "checksum"]

#: environment variable read by :meth:`Account.from_env`
KEY_ENV = "IDLEGRID_PRIVATE_KEY"


@lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """Return the EIP-55 checksummed form of ``address``; raise InvalidInput if malformed.

    Cached: a node and a client check the same few addresses on every message.
    """
    try:
        return str(to_checksum_address(address))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"not an Ethereum address: {address!r}") from exc


@dataclass(frozen=True)
class Account:
    """An address and its private key. ``repr`` never shows the key."""

    address: str
    key: bytes = field(repr=False)

    @classmethod
    def from_key(cls, key: str | bytes) -> Account:
        """Build an account from a 32-byte private key (bytes or 0x-hex)."""
        try:
            acct = _EthAccount.from_key(key)
        except (ValueError, TypeError) as exc:
            raise InvalidInput("not a valid secp256k1 private key") from exc
        return cls(address=str(acct.address), key=bytes(acct.key))

    @classmethod
    def create(cls) -> Account:
        """A fresh random account."""
        acct = _EthAccount.create()
        return cls(address=str(acct.address), key=bytes(acct.key))

    @classmethod
    def from_env(cls, name: str = KEY_ENV) -> Account:
        """Read the private key from environment variable ``name``."""
        value = os.environ.get(name)
        if not value:
            raise ConfigError(f"environment variable {name} is not set")
        return cls.from_key(value.strip())

    @classmethod
    def from_keystore(cls, path: str | Path, password: str) -> Account:
        """Decrypt an eth-account (Web3 Secret Storage) keystore file."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read keystore {p}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"keystore {p} is not JSON") from exc
        try:
            key = _EthAccount.decrypt(data, password)
        except ValueError as exc:
            raise ConfigError(f"cannot decrypt keystore {p}: {exc}") from exc
        return cls.from_key(bytes(key))

    def to_keystore(self, path: str | Path, password: str) -> Path:
        """Write this account to an encrypted keystore file (mode 0600)."""
        p = Path(path)
        data = _EthAccount.encrypt(self.key, password)
        p.write_text(json.dumps(data))
        p.chmod(0o600)
        return p

    @property
    def key_hex(self) -> str:
        """The private key as 0x-prefixed hex."""
        return "0x" + self.key.hex()
