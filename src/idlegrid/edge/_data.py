"""An edge node's private data: data sets found in its data directory, by name.

A peer names a data set only by a name this module found (a file stem matching
``DATASET_NAME``); nothing a peer sends is joined to a path. The files never enter
the blob store, so no blob request can read them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import ConfigError, InvalidInput, NotFound
from ..workloads._kind_fl import DATASET_NAME, read_local_dataset

__all__ = ["EdgeDataset", "scan_datasets"]

log = logging.getLogger("idlegrid.edge")

#: data sets one edge node may hold
MAX_DATASETS = 256


@dataclass(frozen=True)
class EdgeDataset:
    """One local data set: where it is, and what the node advertises about it."""

    name: str
    path: Path
    rows: int
    features: tuple[int, ...]
    labels: int  # distinct labels (a coordinator checks its model's classes)

    def advertised(self) -> dict[str, Any]:
        return {"rows": self.rows, "features": list(self.features), "labels": self.labels}


def scan_datasets(directory: Path) -> dict[str, EdgeDataset]:
    """Every ``NAME.npz`` (x, y) under ``directory`` (not recursive) whose name is
    valid; a file that is not a data set is skipped with a warning."""
    if not directory.is_dir():
        raise ConfigError(f"the data directory {directory} does not exist")
    found: dict[str, EdgeDataset] = {}
    for path in sorted(directory.glob("*.npz")):
        name = path.stem
        if not re.fullmatch(DATASET_NAME, name) or not path.is_file():
            log.warning("skipping %s: a data set is named [a-z0-9][a-z0-9_-]*.npz", path.name)
            continue
        try:
            x, y = read_local_dataset(str(path))
        except InvalidInput as exc:
            log.warning("skipping %s: %s", path.name, exc)
            continue
        found[name] = EdgeDataset(
            name, path.resolve(), len(y), tuple(x.shape[1:]), len(np.unique(y))
        )
        if len(found) >= MAX_DATASETS:
            break
    return found


def lookup(datasets: dict[str, EdgeDataset], name: str) -> EdgeDataset:
    try:
        return datasets[name]
    except KeyError:
        raise NotFound(
            f"no data set {name!r} on this edge node; it holds {sorted(datasets) or 'none'}"
        ) from None
