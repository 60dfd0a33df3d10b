"""idlegrid: an open network that turns idle GPUs and CPUs into paid AI compute."""

from ._exceptions import (
    BadProof,
    BadSignature,
    ChainTimeout,
    ChainUnavailable,
    ConfigError,
    ContractReverted,
    IdlegridError,
    InvalidInput,
    PeerError,
    UnavailableError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "BadProof",
    "BadSignature",
    "ChainTimeout",
    "ChainUnavailable",
    "ConfigError",
    "ContractReverted",
    "IdlegridError",
    "InvalidInput",
    "PeerError",
    "UnavailableError",
    "UsageError",
    "__version__",
]
