"""Where a network file is, found without importing the chain client (seconds of
imports), so that a command given a wrong path says so at once."""

from __future__ import annotations

from pathlib import Path

from ._exceptions import ConfigError

__all__ = ["DEVNET_FILE", "devnet_file"]

DEVNET_FILE = "devnet.json"


def devnet_file(path: Path | str) -> Path:
    """The network file ``path`` names (the file, or ``devnet.json`` in the directory);
    ConfigError if there is none."""
    file = Path(path)
    if file.is_dir():
        file = file / DEVNET_FILE
    if not file.exists():
        raise ConfigError(f"no devnet at {file}: start one with `idlegrid devnet up`")
    return file
