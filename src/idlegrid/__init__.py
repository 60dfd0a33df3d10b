"""idlegrid: an open network that turns idle GPUs and CPUs into paid AI compute."""

from ._exceptions import (
    BadProof,
    BadSignature,
    BlobCorrupt,
    BlobNotFound,
    ChainTimeout,
    ChainUnavailable,
    ConfigError,
    ContractReverted,
    IdlegridError,
    InvalidInput,
    PayloadTooLarge,
    PeerError,
    UnavailableError,
    UsageError,
    WorkloadError,
)

__version__ = "0.1.0"

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
    "__version__",
]
