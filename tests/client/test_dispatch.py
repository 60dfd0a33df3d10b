"""Fail-over rules of ``dispatch``: every per-shard error ends in fail-over or in one error.

Sessions are stand-ins (only ``address`` is read); ``run`` decides per provider
what happens to a shard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pytest

from idlegrid._exceptions import ContractReverted
from idlegrid.client import (
    Backoff,
    JobTimedOut,
    ModelRejected,
    NoProviders,
    ProviderFailed,
    ProviderRefused,
    ProviderSession,
    Shard,
    dispatch,
    make_shards,
)
from idlegrid.client._discovery import read_limits
from idlegrid.client._selection import Limits


@dataclass(frozen=True)
class FakeSession:
    address: str
    limits: Limits = field(default_factory=Limits)


Behaviour = Callable[[str, Shard], Awaitable[np.ndarray]]


def _run(
    providers: list[str],
    behaviour: Behaviour,
    *,
    shards: int = 6,
    prepare: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[dict[int, np.ndarray], Backoff, list[tuple[str, str]]]:
    sessions = [cast(ProviderSession, FakeSession(a)) for a in providers]
    backoff = Backoff()
    failovers: list[tuple[str, str]] = []

    async def everyone() -> list[ProviderSession]:
        return sessions

    async def run(session: ProviderSession, shard: Shard) -> np.ndarray:
        return await behaviour(session.address, shard)

    async def prep(session: ProviderSession) -> None:
        if prepare is not None:
            await prepare(session.address)

    async def main() -> dict[int, np.ndarray]:
        return await dispatch(
            make_shards(np.arange(shards * 2).reshape(-1, 1), 2),
            everyone,
            run,
            prepare=prep,
            backoff=backoff,
            on_failover=lambda a, r: failovers.append((a, r)),
        )

    return asyncio.run(main()), backoff, failovers


async def _ok(shard: Shard) -> np.ndarray:
    await asyncio.sleep(0)
    return np.asarray(shard.rows * 10)


def test_a_refusing_provider_is_left_out_without_being_counted_as_failing() -> None:
    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        if address == "a":
            raise ProviderRefused("a refused the job: 400")
        return await _ok(shard)

    results, backoff, failovers = _run(["a", "b"], behaviour)

    assert sorted(results) == list(range(6))
    assert backoff.failures("a") == 0
    assert [a for a, _ in failovers] == ["a"]


def test_when_every_provider_refuses_the_error_says_what_each_said() -> None:
    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        raise ProviderRefused(f"{address} will not")

    with pytest.raises(NoProviders, match=r"(a will not.*b will not|b will not.*a will not)"):
        _run(["a", "b"], behaviour)


def test_a_model_error_ends_the_batch_with_that_error() -> None:
    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        if shard.index == 3:
            raise ModelRejected("the job failed on the model: Gather index out of range")
        return await _ok(shard)

    with pytest.raises(ModelRejected, match="Gather"):
        _run(["a", "b"], behaviour)


def test_a_timeout_is_tried_once_more_on_another_provider() -> None:
    tried: list[str] = []

    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        if shard.index == 2:
            tried.append(address)
            if len(tried) == 1:
                raise JobTimedOut(f"{address} ran past its limit")
        return await _ok(shard)

    results, backoff, _ = _run(["a", "b"], behaviour)

    assert sorted(results) == list(range(6))
    assert len(tried) == 2 and tried[0] != tried[1]
    assert backoff.failures(tried[0]) == 0


def test_a_second_timeout_ends_the_batch_with_a_clear_error() -> None:
    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        if shard.index == 2:
            raise JobTimedOut(f"{address} ran past its limit")
        return await _ok(shard)

    with pytest.raises(ModelRejected, match="time limit on 2 provider"):
        _run(["a", "b"], behaviour)


def test_a_timeout_with_no_other_provider_ends_the_batch() -> None:
    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        if shard.index == 0:
            raise JobTimedOut(f"{address} ran past its limit")
        return await _ok(shard)

    with pytest.raises(ModelRejected, match="time limit on 1 provider"):
        _run(["a"], behaviour)


def test_a_failing_provider_is_backed_off_and_its_shards_go_elsewhere() -> None:
    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        if address == "a":
            raise ProviderFailed("a sent a result that does not check out: dtype int8")
        return await _ok(shard)

    results, backoff, failovers = _run(["a", "b"], behaviour)

    assert sorted(results) == list(range(6))
    assert backoff.failures("a") == 1
    assert failovers == [("a", "a sent a result that does not check out: dtype int8")]


def test_a_chain_error_while_preparing_ends_the_batch_after_every_worker_stopped() -> None:
    async def prepare(address: str) -> None:
        if address == "a":
            raise ContractReverted("token: insufficient balance")

    async def behaviour(address: str, shard: Shard) -> np.ndarray:
        return await _ok(shard)

    with pytest.raises(ContractReverted, match="insufficient"):
        _run(["a", "b"], behaviour, prepare=prepare)
    # nothing left running in the background: asyncio.run returned, so every task ended


def test_read_limits_takes_what_a_node_advertises_and_refuses_nonsense() -> None:
    limits = read_limits({"max_request_bytes": 1000, "job_timeout_s": 5.0, "metered": 1})

    assert (limits.max_request_bytes, limits.job_timeout_s, limits.metered) == (1000, 5.0, True)
    assert limits.max_output_bytes == 8 * 2**20  # not advertised: the default
    bad_limits: list[dict[str, object]] = [
        {"max_request_bytes": 0},
        {"max_blob_bytes": "x"},
        {"job_timeout_s": -1},
    ]
    for bad in bad_limits:
        with pytest.raises(ValueError):
            read_limits(bad)


def test_never_more_jobs_in_flight_than_the_provider_allows_one_client() -> None:
    # Prepare: a provider that lets one client have 3 jobs at once; the client asks for 8
    running: list[int] = [0]
    most: list[int] = [0]
    session = cast(ProviderSession, FakeSession("0xa", Limits(max_jobs_per_client=3)))

    async def everyone() -> list[ProviderSession]:
        return [session]

    async def run(session: ProviderSession, shard: Shard) -> np.ndarray:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0)
        running[0] -= 1
        return shard.rows

    async def prep(session: ProviderSession) -> None:
        return None

    # Execute
    out = asyncio.run(
        dispatch(
            make_shards(np.arange(40).reshape(40, 1), 1),
            everyone,
            run,
            prepare=prep,
            backoff=Backoff(),
            inflight=8,
        )
    )

    # Assert
    assert len(out) == 40 and most[0] == 3
