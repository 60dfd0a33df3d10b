"""Provider scoring and backoff (pure functions)."""

from __future__ import annotations

from idlegrid.client import Backoff, Candidate, Weights, audits, rank, reputation


def _c(
    address: str, price: int = 100, latency: float = 5.0, points: int = 0, slashed: int = 0
) -> Candidate:
    return Candidate(address, f"http://{address}", price, latency, points, slashed)


def test_cheaper_faster_and_reputable_rank_first() -> None:
    cheap, dear = _c("a", price=100), _c("b", price=300)
    assert [c.address for c in rank([dear, cheap])] == ["a", "b"]
    fast, slow = _c("a", latency=1.0), _c("b", latency=50.0)
    assert [c.address for c in rank([slow, fast])] == ["a", "b"]
    known, new = _c("a", points=20_000), _c("b")
    assert [c.address for c in rank([new, known])] == ["a", "b"]


def test_a_slashed_provider_drops_below_an_unknown_one() -> None:
    slashed, unknown = _c("a", points=90_000, slashed=1), _c("b")
    assert reputation(90_000, 1) < reputation(0, 0)
    assert reputation(-5000) < reputation(0)
    assert [c.address for c in rank([slashed, unknown])] == ["b", "a"]


def test_weights_change_the_order() -> None:
    cheap_slow, dear_fast = _c("a", price=100, latency=100.0), _c("b", price=200, latency=1.0)
    assert rank([cheap_slow, dear_fast], Weights(price=10, latency=0.1))[0].address == "a"
    assert rank([cheap_slow, dear_fast], Weights(price=0.1, latency=10))[0].address == "b"
    assert rank([]) == []


def test_backoff_grows_and_resets() -> None:
    b = Backoff(base_s=2.0, cap_s=10.0)
    assert b.available("x", now=0.0)
    assert b.fail("x", now=0.0) == 2.0
    assert not b.available("x", now=1.0) and b.available("x", now=2.0)
    assert b.fail("x", now=2.0) == 6.0  # 2 * 2**1
    assert b.fail("x", now=6.0) == 14.0  # 8 s
    assert b.fail("x", now=14.0) == 24.0  # capped at 10 s
    assert b.failures("x") == 4
    b.succeed("x")
    assert b.available("x", now=14.0) and b.failures("x") == 0


def test_a_provider_this_client_caught_ranks_below_a_newcomer_and_passed_audits_help() -> None:
    # Prepare: three providers alike but for this client's audits of them
    newcomer = Candidate("0x" + "01" * 20, "http://a", 10, latency_ms=1.0)
    trusted = Candidate("0x" + "02" * 20, "http://b", 10, latency_ms=1.0, audits_passed=44)
    caught = Candidate(
        "0x" + "03" * 20, "http://c", 10, latency_ms=1.0, audits_passed=0, audits_failed=1
    )

    # Execute
    order = rank([caught, newcomer, trusted])

    # Assert
    assert order == [trusted, newcomer, caught]
    assert audits(44) > audits(0) == 0.0 > audits(44, failed=1)
