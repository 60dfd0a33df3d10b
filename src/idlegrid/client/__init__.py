"""The client SDK: discover providers, pay through channels, run jobs with fail-over."""

from ._client import BatchReport, Client, ClosedChannel
from ._discovery import open_index
from ._dispatch import NoProviders, Shard, dispatch, make_shards
from ._disputes import DisputeReport
from ._http import HttpPool
from ._long import Failover, Progress, Run, RunResult
from ._model import ModelRejected, ModelSpec, OutputSpec, probe, read_model
from ._models import ModelStore, parse_model_hash
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
from ._train import TrainCheckpoint, TrainedModel, TrainJob, load_dataset, load_job
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
    "ModelStore",
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
    "TrainCheckpoint",
    "TrainJob",
    "TrainedModel",
    "Transport",
    "Weights",
    "audits",
    "dispatch",
    "load_dataset",
    "load_job",
    "make_shards",
    "open_index",
    "parse_model_hash",
    "probe",
    "rank",
    "read_model",
    "reputation",
    "score",
]
