"""Translate web3 / eth-tester / transport errors into idlegrid's exception tree."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    Web3Exception,
    Web3RPCError,
)

from .._exceptions import (
    ChainTimeout,
    ChainUnavailable,
    ContractReverted,
    IdlegridError,
    PeerError,
)

__all__ = ["revert_reason", "translate"]

_BYTES_REPR = re.compile(r"b(['\"])(.*)\1", re.DOTALL)
_PREFIXES = re.compile(
    r"^(execution reverted:?\s*|VM Exception while processing transaction:\s*revert\s*)"
)


def revert_reason(message: object) -> str:
    """The contract's own reason string from a node's revert message."""
    text = _PREFIXES.sub("", str(message or "").strip()).strip()
    raw = _BYTES_REPR.fullmatch(text)
    if raw:  # eth-tester reports a reason-less revert as the repr of its (empty) data
        text = raw.group(2)
    text = text.strip("'\"").strip()
    return text or "reverted without a reason"


@contextmanager
def translate(function: str | None = None) -> Iterator[None]:
    """Re-raise foreign errors from a chain call as idlegrid errors (``raise ... from``)."""
    try:
        yield
    except IdlegridError:
        raise
    except ContractLogicError as exc:
        raise ContractReverted(revert_reason(exc.message), function=function) from exc
    except UnicodeDecodeError as exc:
        # a String field holding bytes that are not UTF-8: the chain accepts them
        raise PeerError(f"{function or 'call'}: chain data is not valid UTF-8 text") from exc
    except TimeExhausted as exc:
        raise ChainTimeout(f"{function or 'transaction'}: not mined in time ({exc})") from exc
    except (ProviderConnectionError, requests.exceptions.RequestException, ConnectionError) as exc:
        raise ChainUnavailable(f"chain endpoint unreachable: {exc}") from exc
    except Web3RPCError as exc:
        message = exc.message or str(exc)
        if "revert" in message.lower():
            raise ContractReverted(revert_reason(message), function=function) from exc
        raise ChainUnavailable(f"chain RPC error: {message}") from exc
    except BadFunctionCallOutput as exc:
        raise ChainUnavailable(
            f"unexpected answer from chain (is the contract deployed?): {exc}"
        ) from exc
    except Web3Exception as exc:
        raise ChainUnavailable(f"chain error: {exc}") from exc
    except Exception as exc:
        if not _eth_tester_failure(exc):
            raise
        raise ContractReverted(
            revert_reason(exc.args[0] if exc.args else ""), function=function
        ) from exc


def _eth_tester_failure(exc: Exception) -> bool:
    """Whether ``exc`` is eth-tester's revert (``TransactionFailed``). Looked up where
    eth-tester is loaded, not imported here: only the embedded chain loads it, and its
    import costs every node and command on a real chain a third of a second."""
    tester = sys.modules.get("eth_tester.exceptions")
    return tester is not None and isinstance(exc, tester.TransactionFailed)
