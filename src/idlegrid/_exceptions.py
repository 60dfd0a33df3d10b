"""The one exception tree of idlegrid.

Every error idlegrid raises on purpose is an ``IdlegridError``. Foreign errors
(web3, eth-tester, vyper, HTTP, the OS) are caught where we call those libraries
and re-raised as one of these, with the original chained as ``__cause__``::

    IdlegridError
    ├── UsageError                  the caller asked for something wrong
    │   ├── ConfigError             missing or invalid configuration, key or tool
    │   ├── InvalidInput            a malformed argument, spec, hash or payload
    │   │   ├── PayloadTooLarge     a payload or blob is over a size limit or quota
    │   │   └── BlobNotFound        no blob with that sha256 is stored
    │   │       └── BlobCorrupt     a stored blob no longer hashed to its name; it was removed
    │   └── ContractReverted        a contract refused the call; ``.reason`` says why
    ├── UnavailableError            the network or the chain is failing
    │   ├── ChainUnavailable        the JSON-RPC endpoint is unreachable or erroring
    │   ├── ChainTimeout            a transaction was not mined in time
    │   └── WorkloadError           the runtime or device failed (not the job): retry elsewhere
    └── PeerError                   a peer sent something that does not check out
        ├── BadSignature            invalid, by the wrong signer, or for another domain
        └── BadProof                a Merkle proof or receipt does not match its root
"""

from __future__ import annotations

__all__ = [
    "BadProof",
    "BadSignature",
    "BlobCorrupt",
    "BlobNotFound",
    "ChainTimeout",
    "ChainUnavailable",
    "ConfigError",
    "ContractReverted",
    "IdlegridError",
    "InvalidInput",
    "PayloadTooLarge",
    "PeerError",
    "UnavailableError",
    "UsageError",
    "WorkloadError",
]


class IdlegridError(Exception):
    """Root of every error idlegrid raises on purpose."""


class UsageError(IdlegridError):
    """The caller asked for something that cannot be done as asked."""


class ConfigError(UsageError):
    """Configuration, a key, a file such as devnet.json, or a needed tool is missing or invalid."""


class InvalidInput(UsageError):
    """An argument, spec, hash or payload is malformed or out of range."""


class PayloadTooLarge(InvalidInput):
    """A payload, blob or upload is larger than a limit, or would exceed a quota."""


class BlobNotFound(InvalidInput):
    """No blob with the asked-for sha256 digest is stored."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f"no blob with sha256 {digest}")


class BlobCorrupt(BlobNotFound):
    """A stored blob no longer hashed to its name; it was removed and may be uploaded again."""

    def __init__(self, digest: str, actual: str) -> None:
        super().__init__(digest)
        self.actual = actual
        self.args = (
            f"blob sha256 {digest} was corrupt (its bytes hash to {actual}) and was removed:"
            " upload it again",
        )


class ContractReverted(UsageError):
    """A contract refused a call or transaction; ``reason`` holds the contract's reason string."""

    def __init__(self, reason: str, *, function: str | None = None) -> None:
        self.reason = reason
        self.function = function
        where = f"{function}: " if function else ""
        super().__init__(f"{where}{reason}")


class UnavailableError(IdlegridError):
    """The network or the chain is failing; retrying later may help."""


class ChainUnavailable(UnavailableError):
    """The chain's JSON-RPC endpoint cannot be reached or answered with an error."""


class ChainTimeout(UnavailableError):
    """A transaction was sent but not mined within the timeout."""


class WorkloadError(UnavailableError):
    """The runtime or the device failed (out of memory, lost GPU), not the job; retry elsewhere."""


class PeerError(IdlegridError):
    """A peer (provider, client or chain data) sent something that does not check out."""


class BadSignature(PeerError):
    """A signature is malformed, made by the wrong key, or bound to another chain or contract."""


class BadProof(PeerError):
    """A Merkle proof or receipt does not match the root it claims."""
