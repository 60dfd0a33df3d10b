"""What an edge node adds to a provider node: its data, its round secret, its one
unmask answer per round (what ``fl`` jobs ask of ``NodeHost.edge``)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ._data import EdgeDataset, lookup, scan_datasets
from ._egress import Egress

__all__ = ["EdgeState"]


class EdgeState:
    """An edge node's local data and secure-aggregation state."""

    def __init__(self, data_dir: Path, key: bytes, egress: Egress) -> None:
        from ..fl._secagg import UnmaskLedger

        self.data_dir = data_dir
        self.datasets: dict[str, EdgeDataset] = scan_datasets(data_dir)
        self.egress = egress
        # the node's round secret: derived from its key, never the key itself
        self.secret = hmac.new(key, b"idlegrid/fl/secagg/v1", hashlib.sha256).digest()
        self._key = key
        self._unmasked = UnmaskLedger()

    def dataset(self, name: str) -> tuple[str, int]:
        """``(path, rows)`` of a local data set; NotFound naming the ones held."""
        found = lookup(self.datasets, name)
        return str(found.path), found.rows

    def signed_keys(self, run: str, rnd: int) -> dict[str, str]:
        """This node's public keys for a round, signed with its key (roster members check
        the signature, so that the coordinator only relays them)."""
        from ..fl._secagg import client_keys
        from ..protocol import Account
        from ..protocol._fastsig import sign_digest
        from ..workloads._kind_fl import keys_digest

        keys = client_keys(self.secret, run, rnd)
        sig = sign_digest(self._key, keys_digest(run, rnd, keys.pk1, keys.pk2))
        return {
            "pk1": keys.pk1.hex(),
            "pk2": keys.pk2.hex(),
            "address": Account.from_key(self._key).address,
            "sig": sig.hex(),
        }

    def advertised(self) -> dict[str, dict[str, Any]]:
        return {name: d.advertised() for name, d in self.datasets.items()}

    def unmask_once(
        self, run: str, rnd: int, survivors: Collection[int], dropped: Collection[int]
    ) -> None:
        """Refuse a second unmask of a round with other survivors and dropouts (it would
        give a curious coordinator both secrets of one client)."""
        self._unmasked.admit_unmask(run, rnd, survivors, dropped)

    def mask_once(self, run: str, rnd: int, fields: bytes) -> None:
        """Refuse to mask a second, different update in one round (the same masks over
        two updates would give away their difference)."""
        import numpy as np

        digest = hashlib.sha256(fields).digest()
        self._unmasked.admit_mask(run, rnd, np.frombuffer(digest, dtype=np.uint8))
