"""What an edge node adds to a provider node: its data, its round secret, its one
unmask answer per round (what ``fl`` jobs ask of ``NodeHost.edge``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .._exceptions import InvalidInput, NotFound, Unauthorized
from ._data import EdgeDataset, lookup, scan_datasets
from ._egress import Egress

__all__ = ["MAX_UNMASK_BYTES", "EdgeState"]

#: rounds whose coordinator an edge node remembers (the fits it ran, newest kept)
MAX_REMEMBERED_ROUNDS = 4096
#: bytes an unmask request may have (a 128-member roster twice and 128 ciphertexts)
MAX_UNMASK_BYTES = 1 << 20


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
        #: who paid the masked fit of each (run, round) run here
        self._coordinators: OrderedDict[tuple[str, int], str] = OrderedDict()

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

    def record_fit(self, run: str, rnd: int, sender: str | None) -> None:
        """A masked fit of ``(run, rnd)`` paid by ``sender`` runs here: its unmask is
        answered to ``sender`` only."""
        if sender is None:
            return
        key = (run, rnd)
        self._coordinators[key] = sender.lower()
        self._coordinators.move_to_end(key)
        while len(self._coordinators) > MAX_REMEMBERED_ROUNDS:
            self._coordinators.popitem(last=False)

    async def unmask(self, sender: str, body: bytes) -> bytes:
        """Answer a secure round's unmask (``POST /v1/fl/unmask``, signed by ``sender``):
        JSON of ``unmask_answer``.

        Only the client who paid this node's masked fit of that round may ask, once per
        round (``unmask_once``); the work (a few key agreements and Shamir shares) runs
        off the event loop. It is paid with that fit (``FlWorkload.units``), so it
        rides on a signed request instead of a job of its own.
        """
        from ..workloads._kind_fl import FlSpec, unmask_answer

        if len(body) > MAX_UNMASK_BYTES:
            raise InvalidInput(f"an unmask request has at most {MAX_UNMASK_BYTES} bytes")
        spec = await asyncio.to_thread(FlSpec.model_validate_json, body)
        if spec.stage != "unmask" or spec.secagg is None:
            raise InvalidInput("POST /v1/fl/unmask takes a secure round's unmask stage")
        payer = self._coordinators.get((spec.run, spec.round))
        if payer is None:
            raise NotFound(f"no masked fit of round {spec.round} of run {spec.run[:16]} ran here")
        if payer != sender.lower():
            raise Unauthorized(
                "only the client who paid this round's masked fit may ask for its unmask"
            )
        self.unmask_once(spec.run, spec.round, spec.secagg.survivors, spec.secagg.dropped)
        answer = await asyncio.to_thread(unmask_answer, spec, self.secret)
        return json.dumps(answer, sort_keys=True, separators=(",", ":")).encode()
