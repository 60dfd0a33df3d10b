"""The client SDK: discover providers, pay through channels, run jobs with fail-over."""

from ._client import BatchReport, Client, ClosedChannel
from ._discovery import open_index
from ._dispatch import NoProviders, Shard, dispatch, make_shards
from ._disputes import DisputeReport
from ._http import HttpPool
from ._long import Failover, Progress, Run, RunResult
from ._model import ModelRejected, ModelSpec, OutputSpec, probe, read_model
from ._selection import (
    Backoff,
    Candidate,
    Limits,
    Weights,
    audits,
    rank,
    reputation,
    score,
)
from ._session import (
    ClientChannel,
    JobRejected,
    JobTimedOut,
    ProviderFailed,
    ProviderRefused,
    ProviderSession,
)
from ._transport import Response, Stream, Transport

__all__ = [
    "Backoff",
    "BatchReport",
    "Candidate",
    "Client",
    "ClientChannel",
    "ClosedChannel",
    "DisputeReport",
    "Failover",
    "HttpPool",
    "JobRejected",
    "JobTimedOut",
    "Limits",
    "ModelRejected",
    "ModelSpec",
    "NoProviders",
    "OutputSpec",
    "Progress",
    "ProviderFailed",
    "ProviderRefused",
    "ProviderSession",
    "Response",
    "Run",
    "RunResult",
    "Shard",
    "Stream",
    "Transport",
    "Weights",
    "audits",
    "dispatch",
    "make_shards",
    "open_index",
    "probe",
    "rank",
    "read_model",
    "reputation",
    "score",
]
