"""``idlegrid bench rewards --secure``: the rewards benchmark's games when the coordinator
sees each round's aggregate only (secure aggregation), and pays by
:func:`idlegrid.fl.group_contributions`, as a secure run does.

A secure round samples ``COHORT`` of the identities taking part (clients, or a player's
sybil identities), sums their examples-weighted updates (what SecAgg+ reveals), and
scores the aggregate's gain on the sponsor's validation set; each round's part is split
among its cohort by their contributions fitted over the run's rounds so far (``payout:
round``, a secure run's only payout: ``SecureRoundInputs.amounts``). Every client in
every round would make that the equal split, so the runs sample half of the ten clients
a round over twice the clear runs' rounds (each client is sampled about as often as in
a clear run). The games and their figures are the clear benchmark's (padded identities
excepted: nothing compares single updates here, so padding only adds noise to the
sum); the rank correlation is against the same leave-one-out reference (retraining in
the clear: what each client's data is worth to the model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._rewards import FREE_RIDERS, GAMES, PADDED, _fedavg, _fits, _ride, _say, _Setup

__all__ = ["COHORT", "HOW", "secure_games", "secure_run"]

#: identities a secure round samples
COHORT = 5
#: a secure run's rounds, in clear runs' rounds
ROUNDS_FACTOR = 2
#: the games a secure run plays (padding is a game against comparing single updates)
SECURE_GAMES = tuple(g for g in GAMES if g != PADDED)
HOW = {
    "protocol": f"each round samples {COHORT} of the identities taking part (seeded), "
    f"{ROUNDS_FACTOR}x the clear runs' rounds; the coordinator sees the cohort's "
    "examples-weighted mean update only",
    "estimator": "idlegrid.fl.group_contributions over the run's rounds so far (each "
    "round's gain v(new) - v(global), the same validation score as the clear runs), "
    "each round's part split among its cohort by their positive contributions "
    "(payout: round)",
    "games": "the clear benchmark's, padded identities excepted; free riders: client 0 "
    "in the rounds it is sampled",
    "rank_correlation": "against the clear benchmark's leave-one-out reference",
    "overhead": "process CPU seconds of the estimate (both validation scores and the "
    "fit) / of the local training, clean run",
}


def secure_run(
    s: _Setup, game: str = "clean", *, target: int = 0, rider: str | None = None
) -> dict[str, Any]:
    """One secure run: each identity's summed round shares (``shares``, summing to 1),
    the final held-out loss, and the seconds spent training and estimating."""
    from ..fl._contrib import group_contributions, shares, validation_value

    value = validation_value(s.model, s.data.x_test, s.data.y_test)
    parts = s.parts(game, target)
    params = s.start.copy()
    previous: np.ndarray | None = None
    history: list[tuple[list[int], float]] = []
    total: dict[int, float] = {}
    train_s = contrib_s = 0.0
    for rnd in range(1, ROUNDS_FACTOR * s.rounds + 1):
        t0 = time.process_time()
        rng = np.random.default_rng([s.seed, rnd, 17])
        cohort = [
            parts[i] for i in sorted(rng.choice(len(parts), min(COHORT, len(parts)), replace=False))
        ]
        updates, examples = _fits(s, params, rnd, cohort)
        if rider is not None and 0 in updates:
            updates[0] = _ride(s, rnd, rider, params, previous)
        new = _fedavg(updates, examples).astype(np.float32)
        train_s += time.process_time() - t0
        t0 = time.process_time()
        history.append((sorted(updates), float(value(new)) - float(value(params))))
        phi = group_contributions(history)
        for c, share in shares({c: phi[c] for c in updates}).items():
            total[c] = total.get(c, 0.0) + share
        contrib_s += time.process_time() - t0
        previous = new - params
        params = new
    norm = sum(total.values()) or 1.0
    return {
        "shares": {c: v / norm for c, v in total.items()},
        "loss": s.loss(params),
        "train_s": train_s,
        "contrib_s": contrib_s,
    }


def secure_games(
    s: _Setup, players: int, progress: Callable[[str], None] | None
) -> dict[str, dict[str, Any]]:
    """The clean secure run, the free riders' and every game's, each played by each of
    the first ``players`` clients in turn (the runs ``_figures`` reads)."""
    runs = {"clean": secure_run(s)}
    for mode in FREE_RIDERS:
        runs[f"rider-{mode}"] = secure_run(s, rider=mode)
    for game in SECURE_GAMES:
        for t in range(players):
            runs[f"{game}@{t}"] = secure_run(s, game, target=t)
    _say(progress, f"seed {s.seed}: secure runs, every game, {players} players; free riders "
         f"{max(runs[f'rider-{m}']['shares'].get(0, 0.0) for m in FREE_RIDERS):.4f}")  # fmt: skip
    return runs
