"""A client's local training: the work of one federated round on one edge node.

The same function trains in the ``fl`` workload's worker (on an edge node's private
data), in the Flower baseline's ``NumPyClient`` and in the centralized baseline, so a
comparison between them measures the federation, not two training loops.

Parameters travel as one flat float32 vector in ``parameters_to_vector`` order of the
network :func:`~idlegrid.workloads._train_models.build` makes. Training is
deterministic for a given seed (one thread, deterministic algorithms, a seeded order).
FedProx's proximal term ``mu / 2 * ||w - w_global||^2`` is added to the loss when
``prox_mu > 0`` (Li et al., 2020, as Flower's FedProx clients do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .._exceptions import ConfigError, InvalidInput
from ..workloads._train_models import ModelSpec, build, deterministic, param_count

if TYPE_CHECKING:
    import torch

__all__ = [
    "LocalFit",
    "evaluate_params",
    "gce_gradient",
    "initial_params",
    "local_fit",
    "logit_effects",
    "true_class_log_probs",
]


@dataclass(frozen=True)
class LocalFit:
    """What a client's round produced: its new weights, its mean training loss and the
    examples it trained on (the FedAvg weight)."""

    params: np.ndarray
    loss: float
    examples: int


def _torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover - the fl extra has it
        raise ConfigError("federated training needs PyTorch (pip install 'idlegrid[fl]')") from None


def _network(model: ModelSpec, params: np.ndarray) -> torch.nn.Module:
    import torch

    n = param_count(model)
    if params.shape != (n,) or params.dtype != np.float32:
        raise InvalidInput(f"the global model is not float32 [{n}]: {params.dtype}{params.shape}")
    if not np.isfinite(params).all():
        raise InvalidInput("the global model has NaN or Inf weights")
    torch.manual_seed(0)
    net = build(model)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(params.copy()), net.parameters())
    return net


def initial_params(model: ModelSpec, seed: int) -> np.ndarray:
    """The weights ``torch.manual_seed(seed)`` gives the network (round 0's model)."""
    _torch()
    import torch

    torch.manual_seed(seed)
    net = build(model)
    with torch.no_grad():
        return torch.nn.utils.parameters_to_vector(net.parameters()).numpy().astype(np.float32)


def local_fit(
    model: ModelSpec,
    params: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch: int,
    lr: float,
    optimizer: Literal["sgd", "adam"] = "sgd",
    prox_mu: float = 0.0,
    seed: int = 0,
) -> LocalFit:
    """Train ``params`` for ``epochs`` passes over ``(x, y)`` in mini-batches of ``batch``
    (the last one smaller), in an order drawn from ``seed``."""
    _torch()
    import torch

    if len(x) != len(y) or len(y) == 0:
        raise InvalidInput(f"local data: {len(x)} rows of x, {len(y)} labels")
    if epochs < 1 or batch < 1 or not lr > 0 or prox_mu < 0:
        raise InvalidInput("epochs and batch must be >= 1, lr > 0 and prox_mu >= 0")
    deterministic()
    torch.set_num_threads(1)
    net = _network(model, params)
    net.train()
    start = [p.detach().clone() for p in net.parameters()]
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, foreach=False)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=lr, foreach=False)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
    losses: list[float] = []
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(y)))
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            if prox_mu > 0:
                prox = sum(
                    torch.sum((p - p0) ** 2) for p, p0 in zip(net.parameters(), start, strict=True)
                )
                loss = loss + (prox_mu / 2) * prox
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            losses.append(float(loss.detach()))
    with torch.no_grad():
        out = torch.nn.utils.parameters_to_vector(net.parameters()).numpy().astype(np.float32)
    return LocalFit(out, float(np.mean(losses)), len(y))


def _logits(model: ModelSpec, params: np.ndarray, x: np.ndarray) -> torch.Tensor:
    import torch

    net = _network(model, params)
    net.eval()
    with torch.no_grad():
        return torch.cat(
            [
                net(torch.from_numpy(np.ascontiguousarray(x[i : i + 1024])))
                for i in range(0, len(x), 1024)
            ]
        )


def true_class_log_probs(
    model: ModelSpec, params: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """float64 ``[rows]``: each row's log-probability of its label under ``params``."""
    _torch()
    import torch

    logits = _logits(model, params, x).double()
    picked = torch.log_softmax(logits, dim=1)[
        torch.arange(len(y)), torch.from_numpy(y.astype(np.int64))
    ]
    return np.asarray(picked.numpy(), dtype=np.float64)


def gce_gradient(
    model: ModelSpec, params: np.ndarray, x: np.ndarray, y: np.ndarray, q: float
) -> np.ndarray:
    """float64 ``[P]``: the gradient, in ``parameters_to_vector`` order, of the mean of
    ``(p ** q - 1) / q`` over the rows, ``p`` each row's probability of its label (minus
    the generalized cross-entropy), by autograd."""
    _torch()
    import torch

    net = _network(model, params)
    net.eval()
    net.zero_grad(set_to_none=True)
    labels = torch.from_numpy(y.astype(np.int64))
    for i in range(0, len(x), 1024):
        logits = net(torch.from_numpy(np.ascontiguousarray(x[i : i + 1024]))).double()
        picked = torch.log_softmax(logits, dim=1)[torch.arange(len(logits)), labels[i : i + 1024]]
        part = torch.expm1(q * picked).sum() / (q * len(x))
        part.backward()  # type: ignore[no-untyped-call]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]
    return np.asarray(torch.cat([g.reshape(-1) for g in grads]).numpy(), dtype=np.float64)


def logit_effects(
    model: ModelSpec, params: np.ndarray, x: np.ndarray, deltas: np.ndarray
) -> np.ndarray:
    """float64 ``[n, rows * classes]``: each update's (``deltas``, ``[n, P]``)
    first-order change of the logits of ``x`` at ``params``, by forward-mode autograd."""
    _torch()
    import warnings

    import torch
    from torch.func import functional_call, jvp

    net = _network(model, params)
    net.eval()
    names = [name for name, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    sizes = [p.numel() for _, p in net.named_parameters()]

    def unflat(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, sizes)
        return {n: t.reshape(s) for n, t, s in zip(names, parts, shapes, strict=True)}

    xt = torch.from_numpy(np.ascontiguousarray(x))
    start = torch.from_numpy(np.asarray(params, np.float32).copy())
    out = []
    with warnings.catch_warnings():  # forward-mode AD's first use scripts helpers (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        for d in np.asarray(deltas, np.float32):
            got = jvp(
                lambda flat: functional_call(net, unflat(flat), (xt,)),
                (start,),
                (torch.from_numpy(d.copy()),),
            )
            out.append(got[1].detach().double().reshape(-1).numpy())
    return np.stack(out) if out else np.zeros((0, 0))


def evaluate_params(
    model: ModelSpec, params: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``params`` on ``(x, y)``."""
    _torch()
    import torch

    logits = _logits(model, params, x)
    with torch.no_grad():
        yt = torch.from_numpy(y.astype(np.int64))
        loss = float(torch.nn.functional.cross_entropy(logits, yt))
        accuracy = float((logits.argmax(dim=1) == yt).float().mean())
    return loss, accuracy
