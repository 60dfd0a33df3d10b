"""The client SDK: discover providers, pay through channels, run jobs with fail-over."""

from ._client import BatchReport, Client
from ._dispatch import NoProviders, Shard, dispatch, make_shards
from ._selection import Backoff, Candidate, Weights, rank, reputation, score
from ._session import ClientChannel, JobRejected, ProviderFailed, ProviderSession

__all__ = [
    "Backoff",
    "BatchReport",
    "Candidate",
    "Client",
    "ClientChannel",
    "JobRejected",
    "NoProviders",
    "ProviderFailed",
    "ProviderSession",
    "Shard",
    "Weights",
    "dispatch",
    "make_shards",
    "rank",
    "reputation",
    "score",
]
