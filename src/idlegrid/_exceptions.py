"""The one exception tree of idlegrid.

Every error idlegrid raises on purpose is an ``IdlegridError``. Foreign errors
(web3, eth-tester, vyper, HTTP, the OS) are caught where we call those libraries
and re-raised as one of these, with the original chained as ``__cause__``::

    IdlegridError
    ├── UsageError                  the caller asked for something wrong
    │   ├── ConfigError             missing or invalid configuration, key or tool
    │   ├── InvalidInput            a malformed argument, spec, hash or payload
    │   │   ├── PayloadTooLarge     a payload or blob is over a size limit or quota
    │   │   ├── NotFound            the blob or run a request names is not on the node
    │   │   │   ├── BlobNotFound    no blob with that sha256 is stored
    │   │   │   │   └── BlobCorrupt  a stored blob no longer hashed to its name: removed
    │   │   │   └── UnknownRun      no run with that id is on the node
    │   │   ├── PaymentRequired     the channel cannot pay for the job (yet)
    │   │   ├── DuplicateJob        a job id or sequence number was already used on the node
    │   │   └── ModelRejected       the job is wrong for the model: no provider would run it
    │   └── ContractReverted        a contract refused the call; ``.reason`` says why
    ├── UnavailableError            the network, the chain or a node is failing or full
    │   ├── ChainUnavailable        the JSON-RPC endpoint is unreachable or erroring
    │   ├── ChainTimeout            a transaction was not mined in time
    │   ├── WorkloadError           the runtime or device failed (not the job): retry elsewhere
    │   ├── ExecutorBusy            every worker is busy and the queue is full
    │   ├── ExecutorClosed          the executor is closed; the job did not run or was dropped
    │   ├── ClientBusy              the client has as many jobs running or queued as it may
    │   ├── ProviderFailed          a provider died, timed out or sent what does not check out
    │   │   └── ProviderRefused     a provider refused work that others may take
    │   ├── JobTimedOut             a provider ran the job past its limits, and billed it
    │   └── NoProviders             no provider is left that could finish the work
    ├── PeerError                   a peer sent something that does not check out
    │   ├── BadSignature            invalid, by the wrong signer, or for another domain
    │   │   └── Unauthorized        correctly signed, by a signer not allowed to do this
    │   ├── BadProof                a Merkle proof or receipt does not match its root
    │   ├── SlowRequest             a request body did not arrive in time
    │   ├── HttpProtocolError       an answer that is not well-formed HTTP/1.1, or too large
    │   └── RpcFault                a JSON-RPC request our devnet server refuses (its code)
    └── JobError                    a job could not finish on this node
        ├── JobFailed               the task raised a foreign exception; ``exc_type`` names it
        ├── JobCrashed              the worker died while running the job, and was replaced
        ├── JobTimeout              the job ran past its wall-time limit; its worker was killed
        └── OutputTooLarge          the job's output is larger than the worker may return

An idlegrid error raised by a task in a worker is not wrapped: it comes back as its own
class. Each class can be pickled with its attributes, so an error can cross processes.

``HTTP_STATUS`` is the one table between these errors and HTTP statuses: the node answers
``status_of(exc)``, and the client reads a status back with ``error_for_status``.
"""

from __future__ import annotations

from functools import partial

__all__ = [
    "HTTP_STATUS",
    "BadProof",
    "BadSignature",
    "BlobCorrupt",
    "BlobNotFound",
    "ChainTimeout",
    "ChainUnavailable",
    "ClientBusy",
    "ConfigError",
    "ContractReverted",
    "DuplicateJob",
    "ExecutorBusy",
    "ExecutorClosed",
    "HttpProtocolError",
    "IdlegridError",
    "InvalidInput",
    "JobCrashed",
    "JobError",
    "JobFailed",
    "JobTimedOut",
    "JobTimeout",
    "ModelRejected",
    "NoProviders",
    "NotFound",
    "OutputTooLarge",
    "PayloadTooLarge",
    "PaymentRequired",
    "PeerError",
    "ProviderFailed",
    "ProviderRefused",
    "RpcFault",
    "SlowRequest",
    "Unauthorized",
    "UnavailableError",
    "UnknownRun",
    "UsageError",
    "WorkloadError",
    "error_for_status",
    "status_of",
]


class IdlegridError(Exception):
    """Root of every error idlegrid raises on purpose."""


class UsageError(IdlegridError):
    """The caller asked for something that cannot be done as asked."""


class ConfigError(UsageError):
    """Configuration, a key, a file such as devnet.json, or a needed tool is missing or invalid."""


class InvalidInput(UsageError):
    """An argument, spec, hash or payload is malformed or out of range."""


class PayloadTooLarge(InvalidInput):
    """A payload, blob or upload is larger than a limit, or would exceed a quota."""


class NotFound(InvalidInput):
    """The blob or run a request names is not on the node (HTTP 404)."""


class BlobNotFound(NotFound):
    """No blob with the asked-for sha256 digest is stored."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f"no blob with sha256 {digest}")


class BlobCorrupt(BlobNotFound):
    """A stored blob no longer hashed to its name; it was removed and may be uploaded again."""

    def __init__(self, digest: str, actual: str) -> None:
        super().__init__(digest)
        self.actual = actual
        self.args = (
            f"blob sha256 {digest} was corrupt (its bytes hash to {actual}) and was removed:"
            " upload it again",
        )


class PaymentRequired(InvalidInput):
    """The channel cannot pay for this job: top up, extend, or send a voucher first (HTTP 402).

    ``chain`` is True when the chain's view of the channel (open, deposit, expiry)
    is what falls short, so that reading the channel again may show a top-up.
    """

    def __init__(self, message: str, *, chain: bool = False) -> None:
        self.chain = chain
        super().__init__(message)


class DuplicateJob(InvalidInput):
    """A job id (or a channel sequence number) was already used on this node (HTTP 409)."""


class ModelRejected(InvalidInput):
    """The job is wrong for the model (found locally, or by a provider's worker, billed):
    no provider would run it, so the batch ends without blaming any."""


class UnknownRun(NotFound):
    """No run with the asked-for id is on the node (never started, or long finished)."""


class ContractReverted(UsageError):
    """A contract refused a call or transaction; ``reason`` holds the contract's reason string."""

    def __init__(self, reason: str, *, function: str | None = None) -> None:
        self.reason = reason
        self.function = function
        where = f"{function}: " if function else ""
        super().__init__(f"{where}{reason}")


class UnavailableError(IdlegridError):
    """The network or the chain is failing; retrying later may help."""


class ChainUnavailable(UnavailableError):
    """The chain's JSON-RPC endpoint cannot be reached or answered with an error."""


class ChainTimeout(UnavailableError):
    """A transaction was sent but not mined within the timeout."""


class WorkloadError(UnavailableError):
    """The runtime or the device failed (out of memory, lost GPU), not the job; retry elsewhere."""


class ExecutorBusy(UnavailableError):
    """Every worker is busy and the queue is full; retry later or on another node (HTTP 503)."""


class ExecutorClosed(UnavailableError):
    """The executor is closed or closing; the job was not run, or its result was dropped."""


class ClientBusy(UnavailableError):
    """The client already has as many jobs running or queued on this node as it may (HTTP 429)."""


class ProviderFailed(UnavailableError):
    """A provider died, timed out, or sent something that does not check out; try another."""


class ProviderRefused(ProviderFailed):
    """A provider refused work that others may take (its limits, its policy): the batch
    goes on without it, and it is not counted as a failure."""


class JobTimedOut(UnavailableError):
    """A job ran past the provider's time limit, or its worker crashed; the provider
    billed the time it used. Worth one more try on another provider."""


class NoProviders(UnavailableError):
    """No provider is left that could finish the work."""


class PeerError(IdlegridError):
    """A peer (provider, client or chain data) sent something that does not check out."""


class BadSignature(PeerError):
    """A signature is malformed, made by the wrong key, or bound to another chain or contract."""


class Unauthorized(BadSignature):
    """The request is correctly signed, but its signer may not do this (HTTP 403)."""


class BadProof(PeerError):
    """A Merkle proof or receipt does not match the root it claims."""


class SlowRequest(PeerError):
    """The request body did not arrive in time (HTTP 408); the connection is closed."""


class HttpProtocolError(PeerError, ConnectionError):
    """A server's answer is not well-formed HTTP/1.1, or is over a size limit.

    Also a ``ConnectionError``: a transport raises only ``OSError``s, and the session
    turns each into ``ProviderFailed``."""


class RpcFault(PeerError):
    """A JSON-RPC request the devnet's RPC server refuses: ``code`` and ``message`` (and
    ``data``, a revert's bytes) are what the server answers its client."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def __reduce__(self) -> tuple[type[RpcFault], tuple[int, str, str | None]]:
        return (type(self), (self.code, self.message, self.data))

    def as_error(self) -> dict[str, object]:
        """The JSON-RPC ``error`` object."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class JobError(IdlegridError):
    """A job could not finish on this node: it raised, crashed or ran too long."""

    def __init__(self, message: str, *, task: str = "") -> None:
        self.task = task
        super().__init__(message)


class JobFailed(JobError):
    """The task raised an exception that is not an idlegrid error; ``exc_type`` names its class."""

    def __init__(self, exc_type: str, message: str, *, task: str = "", traceback: str = "") -> None:
        self.exc_type = exc_type
        self.message = message
        #: the worker's formatted traceback, for the node's log (cut to its last few KiB)
        self.traceback = traceback
        super().__init__(f"{task or 'task'} raised {exc_type}: {message}", task=task)

    def __reduce__(self) -> tuple[object, ...]:
        # args hold the formatted text: rebuild from the parts, then restore other attributes
        rebuild = partial(type(self), task=self.task, traceback=self.traceback)
        return (rebuild, (self.exc_type, self.message), self.__dict__)


class JobCrashed(JobError):
    """The worker died while running the job (signal, exit, out of memory); it was replaced."""

    def __init__(self, message: str, *, task: str = "", exitcode: int | None = None) -> None:
        #: the worker's exit status: negative for a signal, None if unknown (out of memory)
        self.exitcode = exitcode
        super().__init__(message, task=task)


class JobTimeout(JobError):
    """The job ran past its wall-time limit; its worker was killed and replaced."""

    def __init__(self, message: str, *, task: str = "", seconds: float = 0.0) -> None:
        #: the wall-time limit the job ran past
        self.seconds = seconds
        super().__init__(message, task=task)


class OutputTooLarge(JobError):
    """The job's output is larger than a worker may return; it was dropped in the worker."""

    def __init__(self, message: str, *, task: str = "", size: int = 0, limit: int = 0) -> None:
        #: bytes the output has (or would have), and the most a worker returns
        self.size = size
        self.limit = limit
        super().__init__(message, task=task)


#: The HTTP status a node answers for each error, the most specific class first: an error
#: gets the status of the first class it is an instance of (500 if none). Read backwards,
#: a status names the last (most general) class listed with it.
HTTP_STATUS: tuple[tuple[type[IdlegridError], int], ...] = (
    (SlowRequest, 408),
    (Unauthorized, 403),
    (BadSignature, 401),
    (PaymentRequired, 402),
    (DuplicateJob, 409),
    (NotFound, 404),
    (PayloadTooLarge, 413),
    (ExecutorBusy, 503),
    (ClientBusy, 429),
    (JobTimeout, 422),
    (JobCrashed, 422),
    (JobFailed, 422),
    (JobError, 422),
    (InvalidInput, 400),
    (UnavailableError, 503),
    (IdlegridError, 400),
)

_BY_STATUS: dict[int, type[IdlegridError]] = dict((status, cls) for cls, status in HTTP_STATUS)


def status_of(exc: BaseException | type[BaseException]) -> int:
    """The HTTP status a node answers for an error (or an error class); 500 if it is not ours."""
    cls = exc if isinstance(exc, type) else type(exc)
    for known, status in HTTP_STATUS:
        if issubclass(cls, known):
            return status
    return 500


def error_for_status(status: int) -> type[IdlegridError] | None:
    """The most general error class a node answers with ``status``; None if it never sends it."""
    return _BY_STATUS.get(status)
