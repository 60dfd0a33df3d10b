"""Federated learning: rounds over edge nodes, Flower's strategies, secure aggregation,
differential privacy, each round's model in the on-chain lineage.

* :class:`Coordinator` (``Client.federate``, ``idlegrid fl start``): the rounds;
* :func:`make_strategy`: FedAvg, FedProx, FedAdam, trimmed mean, median, Krum, from
  Flower's ``flwr.server.strategy`` behind one small interface (``_strategy.py``);
* ``_secagg.py``: SecAgg+ on Flower's primitives, stateless on the client;
* ``_dp.py``: DP-FedAvg (clipping, Gaussian noise) with opacus's RDP accountant;
* :func:`aumann_shapley` (``_contrib.py``): what each client's update added to a round
  (its Shapley value, from the validation score's gradient along the round's step, with
  free riders, replays, duplicates and look-alike identities priced out;
  :func:`gtg_shapley` for a score without a gradient), :func:`shares` to pay by it,
  :func:`net_rounds` to net a run's rounds;
* :class:`RoundInputs` (``_inputs.py``): a clear round's published inputs, from which
  anyone recomputes its contributions and reward posting, :func:`check_posting` to
  judge a posting against the recomputation; :class:`SecureRoundInputs`
  (``_secure_inputs.py``), a secure round's (its run's secure aggregates so far);
  :class:`RunInputs` (``_run_inputs.py``), a run's settlement (``payout: run``: every
  round's inputs, contributions netted over the run); :func:`read_round_inputs` to read
  any of them from a stranger's bytes; :func:`settle_held` (``_held.py``) settles a
  ``payout: run`` run whose coordinator was killed, from the rounds it held on disk;
* ``_local.py``: a client's local training (the same in idlegrid, Flower and the
  centralized baseline); ``_partition.py``: Dirichlet label partitions;
  ``_flower.py``: the Flower baseline the benchmark runs next to idlegrid.
"""

from __future__ import annotations

from ._contrib import (
    RoundContribution,
    aumann_shapley,
    gtg_shapley,
    net_rounds,
    shares,
    validation_value,
)
from ._coordinator import Coordinator, FederatedResult, RoundReport, check_update, client_seed
from ._held import read_held, settle_held
from ._inputs import MAX_INPUTS_BYTES, RoundInputs, check_posting, post_contributions
from ._local import LocalFit, evaluate_params, initial_params, local_fit
from ._run_inputs import RunInputs
from ._secure_inputs import SecureRoundInputs, read_round_inputs
from ._spec import DpSpec, FederatedSpec, LocalSpec, StrategySpec, load_spec
from ._strategy import FitResult, Strategy, make_strategy

__all__ = [
    "MAX_INPUTS_BYTES",
    "Coordinator",
    "DpSpec",
    "FederatedResult",
    "FederatedSpec",
    "FitResult",
    "LocalFit",
    "LocalSpec",
    "RoundContribution",
    "RoundInputs",
    "RoundReport",
    "RunInputs",
    "SecureRoundInputs",
    "Strategy",
    "StrategySpec",
    "aumann_shapley",
    "check_posting",
    "check_update",
    "client_seed",
    "evaluate_params",
    "gtg_shapley",
    "initial_params",
    "load_spec",
    "local_fit",
    "make_strategy",
    "net_rounds",
    "post_contributions",
    "read_held",
    "read_round_inputs",
    "settle_held",
    "shares",
    "validation_value",
]
