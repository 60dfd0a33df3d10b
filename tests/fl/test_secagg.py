"""Secure aggregation: the sum unmasks through dropouts, one member's update never does."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping

import numpy as np
import pytest
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
from numpy.typing import NDArray
from scipy import stats  # type: ignore[import-untyped]  # no stubs (src ignores it so too)

from idlegrid._exceptions import InvalidInput
from idlegrid.fl._secagg import (
    RoundKeys,
    SecAggConfig,
    SecAggServer,
    UnmaskLedger,
    _derive,
    _prg,
    client_keys,
    client_mask,
    client_shares,
    client_unmask,
)

N = 10
P = 500
RUN = "run-a"
RND = 3
CFG = SecAggConfig.for_clients(N)  # threshold 7: 3 of 10 may drop
SECRETS = {i: hashlib.sha256(f"member-{i}".encode()).digest() for i in range(1, N + 1)}
STEP = 2 * CFG.clip_range / CFG.target_range  # one quantization step

Roster = dict[int, RoundKeys]
Outbox = dict[int, dict[int, bytes]]
Updates = dict[int, NDArray[np.float32]]
Masked = dict[int, NDArray[np.uint64]]
Extremes = tuple[NDArray[np.uint64], NDArray[np.uint64]]


@pytest.fixture(scope="module")
def roster() -> Roster:
    return {i: client_keys(SECRETS[i], RUN, RND) for i in SECRETS}


@pytest.fixture(scope="module")
def outbox(roster: Roster) -> Outbox:
    """What each member sent in stage "share": ``outbox[j][me]`` is for ``me``."""
    return {i: client_shares(SECRETS[i], RUN, RND, i, roster, CFG) for i in SECRETS}


@pytest.fixture(scope="module")
def updates() -> Updates:
    rng = np.random.default_rng(0)
    return {i: rng.normal(0.0, 1.0, P).astype(np.float32) for i in SECRETS}


@pytest.fixture(scope="module")
def masked(roster: Roster, updates: Updates) -> Masked:
    return {i: client_mask(SECRETS[i], RUN, RND, i, roster, CFG, updates[i]) for i in SECRETS}


def inbox(outbox: Outbox, me: int) -> dict[int, bytes]:
    return {j: outbox[j][me] for j in outbox}


def unmask_answer(
    roster: Roster,
    outbox: Outbox,
    me: int,
    survivors: Collection[int],
    dropped: Collection[int],
    box: Mapping[int, bytes] | None = None,
) -> dict[int, bytes]:
    box = inbox(outbox, me) if box is None else box
    return client_unmask(SECRETS[me], RUN, RND, me, roster, CFG, box, survivors, dropped)


def run_round(
    roster: Roster,
    outbox: Outbox,
    masked: Masked,
    senders: Collection[int],
    answerers: Collection[int],
) -> NDArray[np.float64]:
    server = SecAggServer(roster, CFG)
    for i in senders:
        server.add(i, masked[i])
    answers = {
        k: unmask_answer(roster, outbox, k, server.survivors, server.dropped) for k in answerers
    }
    return server.unmask(answers)


def float_sum(updates: Updates, ids: Collection[int]) -> NDArray[np.float64]:
    total: NDArray[np.float64] = np.sum([updates[i].astype(np.float64) for i in ids], axis=0)
    return total


# --- config and keys -----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "threshold"), [(3, 3), (10, 7), (11, 8), (20, 14), (50, 35)])
def test_for_clients_tolerates_30_percent_dropout_but_needs_a_majority(
    n: int, threshold: int
) -> None:
    cfg = SecAggConfig.for_clients(n)

    assert cfg.threshold == threshold
    assert 2 * cfg.threshold > n
    assert n - int(0.3 * n + 1e-9) >= cfg.threshold
    assert (cfg.clip_range, cfg.target_range, cfg.mod_range) == (8.0, 2**22, 2**32)  # Flower's


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SecAggConfig.for_clients(1024), "wrap"),  # 1024 * 2**22 == 2**32
        (lambda: SecAggConfig.for_clients(2), "at least 3"),
        (lambda: SecAggConfig.for_clients(10, dropout=0.5), "dropout"),
        (lambda: SecAggConfig(threshold=1), "threshold"),
        (lambda: SecAggConfig(threshold=5, mod_range=3 * 2**30), "power of two"),
        (lambda: SecAggConfig(threshold=5, clip_range=float("nan")), "clip_range"),
        (lambda: SecAggConfig(threshold=5, target_range=2**31), "target_range"),
    ],
)
def test_bad_config_is_refused(make: Callable[[], object], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        make()


def test_round_keys_are_derived_not_stored(roster: Roster) -> None:
    again = client_keys(SECRETS[1], RUN, RND)
    next_round = client_keys(SECRETS[1], RUN, RND + 1)
    other_run = client_keys(SECRETS[1], RUN + "x", RND)

    assert again == roster[1]
    assert len({roster[1].pk1, roster[1].pk2, next_round.pk1, other_run.pk1}) == 4
    assert len(roster[1].pk1) == 32  # a raw X25519 key
    with pytest.raises(InvalidInput, match="32 bytes"):
        client_keys(b"short", RUN, RND)


# --- the sum -------------------------------------------------------------------------------


def test_sum_of_ten_unmasks_to_the_float_sum(
    roster: Roster, outbox: Outbox, masked: Masked, updates: Updates
) -> None:
    total = run_round(roster, outbox, masked, senders=SECRETS, answerers=SECRETS)

    assert total.shape == (P,)
    np.testing.assert_allclose(total, float_sum(updates, SECRETS), rtol=0, atol=N * STEP)


def test_sum_unmasks_when_three_of_ten_drop_before_masking(
    roster: Roster, outbox: Outbox, masked: Masked, updates: Updates
) -> None:
    senders = set(SECRETS) - {2, 5, 9}

    total = run_round(roster, outbox, masked, senders=senders, answerers=senders)

    np.testing.assert_allclose(total, float_sum(updates, senders), rtol=0, atol=N * STEP)


def test_sum_unmasks_when_members_drop_after_sending(
    roster: Roster, outbox: Outbox, masked: Masked, updates: Updates
) -> None:
    total = run_round(roster, outbox, masked, senders=SECRETS, answerers=set(SECRETS) - {1, 4, 8})
    mixed = run_round(
        roster, outbox, masked, senders=set(SECRETS) - {3}, answerers=set(SECRETS) - {3, 6, 10}
    )

    np.testing.assert_allclose(total, float_sum(updates, SECRETS), rtol=0, atol=N * STEP)
    expected = float_sum(updates, set(SECRETS) - {3})
    np.testing.assert_allclose(mixed, expected, rtol=0, atol=N * STEP)


def test_four_of_ten_dropping_is_below_the_threshold(
    roster: Roster, outbox: Outbox, masked: Masked
) -> None:
    server = SecAggServer(roster, CFG)
    for i in set(SECRETS) - {1, 2, 3, 4}:
        server.add(i, masked[i])

    with pytest.raises(InvalidInput, match="6 survivors are fewer than the threshold 7"):
        unmask_answer(roster, outbox, 5, server.survivors, server.dropped)
    with pytest.raises(InvalidInput, match="fewer than the threshold 7: cannot unmask"):
        run_round(roster, outbox, masked, senders=SECRETS, answerers=set(SECRETS) - {1, 2, 3, 4})


def test_fewer_than_threshold_shares_do_not_rebuild_a_seed(roster: Roster, outbox: Outbox) -> None:
    answers = {k: unmask_answer(roster, outbox, k, SECRETS, ()) for k in SECRETS}
    b_1 = _derive(SECRETS[1], RUN, RND).b
    shares = [answers[k][1] for k in sorted(answers)]

    assert combine_shares(shares[: CFG.threshold]) == b_1  # the power check
    for k in range(1, CFG.threshold):
        try:
            rebuilt = combine_shares(shares[:k])
        except ValueError:  # Flower: the padding does not check out
            continue
        assert rebuilt != b_1


# --- a curious coordinator --------------------------------------------------------------------


def test_ledger_refuses_asking_dropped_then_surviving() -> None:
    ledger = UnmaskLedger()
    everyone = set(SECRETS)
    ledger.admit_unmask(RUN, RND, everyone, ())
    ledger.admit_unmask(RUN, RND, everyone, ())  # a retry of the same request

    with pytest.raises(InvalidInput, match="already answered"):
        ledger.admit_unmask(RUN, RND, everyone - {4}, {4})
    ledger.admit_unmask(RUN, RND + 1, everyone - {4}, {4})  # another round is another question
    with pytest.raises(InvalidInput, match="both survived and dropped"):
        ledger.admit_unmask(RUN, RND + 2, everyone, {4})


def test_ledger_refuses_masking_a_second_vector_under_the_same_masks() -> None:
    ledger = UnmaskLedger()
    ledger.admit_mask(RUN, RND, np.zeros(4, np.float32))
    ledger.admit_mask(RUN, RND, np.zeros(4, np.float32))

    with pytest.raises(InvalidInput, match="different vector"):
        ledger.admit_mask(RUN, RND, np.ones(4, np.float32))


def test_ledger_forgets_old_rounds_by_refusing_them() -> None:
    ledger = UnmaskLedger(max_rounds=2)
    for rnd in (1, 2, 3):
        ledger.admit_unmask(RUN, rnd, {1, 2}, ())
    ledger.admit_unmask("other", 1, {1, 2}, ())

    for rnd in (1, 2):
        with pytest.raises(InvalidInput, match="too old"):
            ledger.admit_unmask(RUN, rnd, {1}, {2})
    ledger.admit_unmask(RUN, 4, {1}, {2})


def test_a_tampered_or_misrouted_ciphertext_is_refused(roster: Roster, outbox: Outbox) -> None:
    me, j, k = 1, 2, 3
    token = outbox[j][me]
    flip = "A" if token[60:61] != b"A" else "B"
    cases = {
        "tampered": token[:60] + flip.encode() + token[61:],
        "meant for another member": outbox[j][k],
    }
    for ciphertext in cases.values():
        box = {**inbox(outbox, me), j: ciphertext}
        with pytest.raises(InvalidInput, match=f"from member {j} does not decrypt"):
            unmask_answer(roster, outbox, me, SECRETS, (), box)

    # my own share for j, reflected back as if j had sent it: it decrypts, names me -> j
    box = {**inbox(outbox, me), j: outbox[me][j]}
    with pytest.raises(InvalidInput, match=f"relayed as {j} -> {me} names {me} -> {j}"):
        unmask_answer(roster, outbox, me, SECRETS, (), box)


def test_unmask_request_must_be_well_formed(roster: Roster, outbox: Outbox) -> None:
    box = inbox(outbox, 1)
    del box[5]

    with pytest.raises(InvalidInput, match="no ciphertext from member 5"):
        unmask_answer(roster, outbox, 1, SECRETS, (), box)
    with pytest.raises(InvalidInput, match="both survived and dropped"):
        unmask_answer(roster, outbox, 1, SECRETS, {4})
    with pytest.raises(InvalidInput, match="distinct roster members"):
        unmask_answer(roster, outbox, 1, [*SECRETS, 11], ())


def test_bad_rosters_are_refused(roster: Roster) -> None:
    def shares(r: Mapping[int, RoundKeys], me: int = 1, cfg: SecAggConfig = CFG) -> object:
        return client_shares(SECRETS[1], RUN, RND, me, r, cfg)

    same_key = {**roster, 2: RoundKeys(roster[2].pk1, roster[1].pk2)}
    with pytest.raises(InvalidInput, match="share a public key"):
        shares(same_key)
    with pytest.raises(InvalidInput, match="fewer than the threshold"):
        shares({i: roster[i] for i in range(1, 7)})
    with pytest.raises(InvalidInput, match="member 11 is not in the roster"):
        shares(roster, me=11)
    with pytest.raises(InvalidInput, match=r"numbered 1\.\.10"):
        shares({**{i: roster[i] for i in range(1, 10)}, 12: roster[10]})
    with pytest.raises(InvalidInput, match="does not hold member 1's keys"):
        shares({**roster, 1: client_keys(SECRETS[1], RUN, RND + 1)})
    with pytest.raises(InvalidInput, match="not a majority"):
        shares(roster, cfg=SecAggConfig(threshold=5))
    with pytest.raises(InvalidInput, match="member 4's public key: not a 32-byte X25519 key"):
        shares({**roster, 4: RoundKeys(b"junk", roster[4].pk2)})
    non_canonical = (2**255 - 19 + 9).to_bytes(32, "little")  # u = 9 plus p: one key, two names
    with pytest.raises(InvalidInput, match="member 4's public key: not a canonical"):
        shares({**roster, 4: RoundKeys(non_canonical, roster[4].pk2)})
    # u = 0 has small order: the shared secret would be all zeros, known to anyone
    with pytest.raises(InvalidInput, match="small order"):
        shares({**roster, 4: RoundKeys(bytes(32), roster[4].pk2)})


def test_server_refuses_bad_masked_vectors(roster: Roster, masked: Masked) -> None:
    server = SecAggServer(roster, CFG)
    server.add(1, masked[1])
    bad = {
        "not in the roster": (11, masked[2]),
        "already sent": (1, masked[1]),
        "int64": (2, masked[2].astype(np.int64)),
        "not uint64": (2, masked[2][:-1]),
        "outside": (2, masked[2] + np.uint64(2**32)),
    }
    for match, (me, vector) in bad.items():
        with pytest.raises(InvalidInput, match=match):
            server.add(me, vector)
    with pytest.raises(InvalidInput, match="no masked vector"):
        SecAggServer(roster, CFG).unmask({})


def test_server_refuses_bad_shares(roster: Roster, outbox: Outbox, masked: Masked) -> None:
    server = SecAggServer(roster, CFG)
    for i in set(SECRETS) - {10}:
        server.add(i, masked[i])
    answers = {
        k: unmask_answer(roster, outbox, k, server.survivors, server.dropped)
        for k in server.survivors
    }
    for owner in (10, 2):  # a dropped member's sk2, a survivor's seed
        share = answers[1][owner]
        corrupt = {**answers, 1: {**answers[1], owner: share[:4] + bytes(len(share) - 4)}}
        with pytest.raises(InvalidInput, match="secagg: "):
            server.unmask(corrupt)
    stolen = {**answers, 1: {**answers[1], 2: answers[3][2]}}  # 3's share, sent by 1
    with pytest.raises(InvalidInput, match="member 1's share of 2's secret is malformed"):
        server.unmask(stolen)


def test_server_checks_what_consistent_but_wrong_shares_rebuild(
    roster: Roster, outbox: Outbox, masked: Masked
) -> None:
    server = SecAggServer(roster, CFG)
    for i in set(SECRETS) - {10}:
        server.add(i, masked[i])
    answers = {
        k: unmask_answer(roster, outbox, k, server.survivors, server.dropped)
        for k in server.survivors
    }
    other_key = _derive(SECRETS[10], RUN, RND + 1).sk2.private_bytes_raw()
    fakes = {  # shares the answerers agree on, of another secret
        10: create_shares(other_key, CFG.threshold, N),
        2: create_shares(bytes(32), CFG.threshold, N),
    }
    for owner, match in ((10, "rebuild another key"), (2, "out of range")):
        forged = {k: {**answers[k], owner: fakes[owner][k - 1]} for k in answers}
        with pytest.raises(InvalidInput, match=match):
            server.unmask(forged)


def test_updates_must_be_finite_float_vectors(roster: Roster) -> None:
    for vector in (np.array([0.0, np.nan]), np.zeros((2, 2)), np.zeros(3, np.int64)):
        with pytest.raises(InvalidInput, match="secagg: the update"):
            client_mask(SECRETS[1], RUN, RND, 1, roster, CFG, vector)


# --- what the coordinator sees ------------------------------------------------------------------


@pytest.fixture(scope="module")
def extremes(roster: Roster) -> Extremes:
    """Member 1 masking all zeros and member 2 masking all +clip, 20000 coordinates."""
    size = 20_000
    low = client_mask(SECRETS[1], RUN, RND, 1, roster, CFG, np.zeros(size, np.float32))
    high = client_mask(SECRETS[2], RUN, RND, 2, roster, CFG, np.full(size, 8.0, np.float32))
    return low, high


def test_a_masked_vector_looks_uniform(extremes: Extremes) -> None:
    low, _ = extremes
    scaled = low / CFG.mod_range
    counts, _ = np.histogram(scaled, bins=100, range=(0.0, 1.0))

    assert low.dtype == np.uint64
    assert stats.kstest(scaled, "uniform").pvalue > 0.01
    assert stats.chisquare(counts).pvalue > 0.01


def test_masked_extremes_are_indistinguishable_unmasked_ones_are_not(extremes: Extremes) -> None:
    low, high = extremes
    q_low, q_high = quantize(
        [np.zeros(low.size), np.full(high.size, 8.0)], CFG.clip_range, CFG.target_range
    )

    masked_p = stats.ks_2samp(low / CFG.mod_range, high / CFG.mod_range).pvalue
    unmasked_p = stats.ks_2samp(q_low / CFG.mod_range, q_high / CFG.mod_range).pvalue

    assert masked_p > 0.01
    assert unmasked_p < 1e-100  # the same test on the same sizes has the power


def test_prg_uses_the_whole_seed_unlike_flowers() -> None:
    seed_a, seed_b = b"AAAABBBB", b"BBBBAAAA"

    flower_a, flower_b = (pseudo_rand_gen(s, 2**32, [(8,)])[0] for s in (seed_a, seed_b))
    ours_a, ours_b = _prg(seed_a, 8, 2**32), _prg(seed_b, 8, 2**32)

    assert np.array_equal(flower_a, flower_b)  # why the mask generator is ours
    assert not np.array_equal(ours_a, ours_b)
    assert int(ours_a.max()) < 2**32


def test_the_shamir_format_is_flower_s_both_ways() -> None:
    from flwr.common.secure_aggregation.crypto import shamir as flower

    from idlegrid.fl._secagg import combine_shares, create_shares

    for secret in (b"x" * 32, b"y" * 48, b"short"):
        ours = create_shares(secret, 3, 5)
        theirs = flower.create_shares(secret, 3, 5)
        assert [len(s) for s in ours] == [len(s) for s in theirs]
        assert [s[:4] for s in ours] == [s[:4] for s in theirs]  # the same indices
        assert flower.combine_shares(ours[1:4]) == secret
        assert combine_shares(theirs[2:]) == secret
        assert combine_shares(ours[:3]) == secret
