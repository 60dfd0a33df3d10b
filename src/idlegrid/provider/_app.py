"""The provider's HTTP API (FastAPI): thin routes over :class:`ProviderNode`.

Every route that matters takes a signed request (see ``protocol._envelope``)
and answers with a signed response. Errors map to status codes with a JSON
body ``{"error": <class>, "reason": <text>}``: 400 bad input, 401 unsigned /
expired / replayed / bad signature, 402 the channel cannot pay, 403 signed by
someone not allowed, 404 unknown blob, 408 the body came too slowly, 409
duplicate job, 413 too large, 429 the client has as many jobs running or queued
as it may, 503 busy. A job that ran and failed (crashed, timed out, raised, output
too large) is answered 422 with a signed ``JobResult`` whose status is "failed": it
is billed, with a receipt, like a job that succeeded.

A body is read as it streams in, and reading stops at the size limit (413) or
when it comes too slowly (408); either answer closes the connection. Work on
large bodies (hashing, parsing, encoding) runs in a thread, so that the event
loop keeps answering ``/v1/health`` while the node is busy.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from .. import __version__
from .._exceptions import (
    BadSignature,
    BlobNotFound,
    IdlegridError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SlowRequest,
    Unauthorized,
    status_of,
)
from ..chain import DisputeClient
from ..oracle._http import AnswerMessage
from ..protocol import (
    ChannelClose,
    DisputeEvidence,
    JobRequest,
    JobResult,
    NodeInfo,
    NodeStatus,
    ReplayGuard,
    RunRequest,
    RunStarted,
    VoucherSubmission,
    sign_response,
    verify_request,
)
from ..store import check_digest
from ._node import ProviderNode
from ._referee import Referee
from ._runs import Run, Runs, UnknownRun
from ._status import StatusReader

__all__ = ["create_app"]

log = logging.getLogger("idlegrid.provider")

#: bodies and responses up to this size are hashed, parsed and encoded on the event
#: loop: a thread hop costs more than the work
INLINE_BYTES = 64 * 2**10

T = TypeVar("T")


async def _off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` here if ``size`` is small, else in a thread."""
    if size <= INLINE_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


_JSON = "application/json"


def _error_body(exc: Exception) -> dict[str, str]:
    return {"error": type(exc).__name__, "reason": str(exc)[:1000]}


def create_app(node: ProviderNode, *, redeem_interval: float = 1.0) -> FastAPI:
    """The FastAPI application of one node; starts the redeemer, redeems on shutdown."""
    replay = ReplayGuard(node.config.data_dir / "nonces.sqlite")  # survives restarts
    config = node.config
    max_body = config.max_request_bytes
    runs = Runs(node)
    status_reader = StatusReader(node)
    referee = None
    if "disputes" in node.ledger.clients:  # a deployment without one: no committee seats
        disputes = node.ledger.client("disputes", DisputeClient)
        referee = Referee(node, disputes, config.data_dir / "referee.json", poll_s=redeem_interval)

    async def lifespan(app: FastAPI) -> Any:
        task = asyncio.create_task(node.redeem_loop(redeem_interval))
        judging = asyncio.create_task(referee.run()) if referee is not None else None
        node.models.start()
        warming = asyncio.create_task(node.warm_up())
        answering = None
        if node.oracle is not None:
            from ..oracle import relay_loop

            answering = asyncio.create_task(relay_loop(node.oracle, redeem_interval))
        try:
            yield
        finally:
            warming.cancel()
            if answering is not None:
                answering.cancel()
            task.cancel()
            if judging is not None:
                judging.cancel()
            await runs.close()
            try:
                await asyncio.to_thread(node.redeem_due, force=True)
            except IdlegridError as exc:
                log.warning("redemption at shutdown failed: %s", exc)
            node.models.close()
            await node.executor.close()

    app = FastAPI(
        title="idlegrid provider node",
        version=__version__,
        description=(__doc__ or "").strip(),
        docs_url="/v1/docs",
        openapi_url="/v1/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )

    async def _read_body(request: Request, limit: int) -> bytes:
        """The body, read as it streams in: PayloadTooLarge once it passes ``limit``
        (whatever content-length said), SlowRequest once it falls behind its deadline
        (body_timeout_s, plus its size so far at min_body_rate)."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        loop = asyncio.get_running_loop()
        start = loop.time()
        size = 0
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout_at(start + config.body_timeout_s) as deadline:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"request body larger than {limit} bytes")
                    chunks.append(chunk)
                    deadline.reschedule(start + config.body_timeout_s + size / config.min_body_rate)
        except TimeoutError:
            raise SlowRequest(
                f"request body too slow: {size} bytes in {loop.time() - start:.0f}s"
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    verify = functools.partial(verify_request, replay=replay)

    async def _signed(request: Request, limit: int) -> tuple[str, bytes, bytes]:
        body = await _read_body(request, limit)
        headers = request.headers
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            sender, digest = await _off_loop(
                len(body), verify, node.domain, node.address, request.method, path, body, headers
            )
        except InvalidInput as exc:  # a sender header that is not an address
            raise BadSignature(f"malformed signature headers: {exc}") from exc
        return sender, digest, body

    async def _reply(
        sender: str, digest: bytes, status: int, body: bytes, media: str = _JSON
    ) -> Response:
        headers = await _off_loop(
            len(body), sign_response, node.account, node.domain, sender, digest, status, body
        )
        return Response(body, status_code=status, media_type=media, headers=headers)

    Handler = Callable[[str, bytes], Awaitable[tuple[int, bytes, str]]]

    async def _guarded(request: Request, handler: Handler, *, limit: int = max_body) -> Response:
        sender = ""
        digest = b""
        try:
            sender, digest, body = await _signed(request, limit)
            status, payload, media = await handler(sender, body)
            return await _reply(sender, digest, status, payload, media)
        except ValidationError as exc:
            err = {"error": "InvalidInput", "reason": _first_error(exc)}
            return await _error(sender, digest, 400, err)
        except IdlegridError as exc:
            response = await _error(sender, digest, status_of(exc), _error_body(exc))
            if not digest:  # the body may not have been read to its end: close the connection
                response.headers["connection"] = "close"
            return response
        except ClientDisconnect:
            return Response(status_code=400, headers={"connection": "close"})

    async def _error(sender: str, digest: bytes, status: int, err: dict[str, str]) -> Response:
        body = json.dumps(err).encode()
        if digest:
            return await _reply(sender, digest, status, body)
        return Response(body, status_code=status, media_type=_JSON)

    @app.get("/v1/health", summary="Liveness probe (unsigned)")
    async def health() -> dict[str, Any]:
        return {"ok": True, "address": node.address, "time": time.time()}

    @app.get("/v1/info", response_model=NodeInfo, summary="Who this node is (unsigned)")
    async def info() -> NodeInfo:
        return node.info()

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # a plain route (a mounted app would answer /metrics with a redirect); rendered
        # in a thread: it reads the journal
        from ._metrics import CONTENT_TYPE_LATEST

        body = await asyncio.to_thread(node.metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/v1/status",
        response_model=NodeStatus,
        summary="Earnings, unredeemed vouchers, open channels, latest jobs (unsigned)",
    )
    async def node_status() -> NodeStatus:
        return await status_reader.read()

    @app.get("/v1/stats", summary="Counters (unsigned)")
    async def stats() -> dict[str, Any]:
        s = node.executor.stats()
        return {
            "jobs_ok": node.stats.jobs_ok,
            "jobs_failed": node.stats.jobs_failed,
            "vouchers": node.stats.vouchers,
            "redemptions": node.stats.redemptions,
            "channels": node.channels,
            "warm": node.warm,
            # models being counted in the helper process (or waiting their turn), and cached
            "models": {"counting": node.models.counting, "cached": node.models.cached},
            # a testing aid's own count (never on an honest node): lies told so far
            **(
                {"cheat": {"mode": node.cheat.mode, "lies": node.cheat.lies}}
                if node.cheat is not None
                else {}
            ),
            "executor": {
                "running": s.running,
                "queued": s.queued,
                "completed": s.completed,
                "failed": s.failed,
                "restarts": s.restarts,
            },
        }

    @app.put(
        "/v1/blobs/{digest}",
        status_code=201,
        summary="Upload a blob (signed); the body's sha256 must equal {digest}",
        responses={400: {}, 401: {}, 413: {}},
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }
            }
        },
    )
    async def put_blob(digest: str, request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            check_digest(digest)
            paying = node.pays(sender)

            def store() -> str:
                with node.blobs.admit(sender, digest, len(body), paying=paying):
                    return node.store.put(body, expected=digest, owner=sender, shared=True)

            stored = await asyncio.to_thread(store)
            import json

            return 201, json.dumps({"digest": stored, "size": len(body)}).encode(), _JSON

        return await _guarded(request, handler)

    @app.get(
        "/v1/blobs/{digest}",
        summary="Download a blob (signed)",
        responses={200: {"content": {"application/octet-stream": {}}}, 401: {}, 404: {}},
    )
    async def get_blob(digest: str, request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            check_digest(digest)
            if not node.blobs.may_read(sender, digest, paying=node.pays(sender)):
                raise Unauthorized(
                    "this blob was uploaded by another key: open a channel here to read it"
                )
            await node.kept(sender)  # a job's blobs still being stored for it
            data = await asyncio.to_thread(node.store.get, digest)
            return 200, data, "application/octet-stream"

        return await _guarded(request, handler)

    @app.head("/v1/blobs/{digest}", summary="Is this blob stored? (unsigned)")
    async def has_blob(digest: str) -> Response:
        try:
            found = node.store.meta(digest).shared  # outputs are not announced
        except BlobNotFound:
            found = False
        except InvalidInput:
            return Response(status_code=400)
        return Response(status_code=200 if found else 404)

    @app.post(
        "/v1/jobs",
        summary="Run a job (signed request, signed response)",
        response_model=JobResult,
        responses={
            400: {},
            401: {},
            402: {},
            403: {},
            404: {},
            409: {},
            413: {},
            422: {},
            429: {},
            503: {},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
            }
        },
    )
    async def submit_job(request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            job = await _off_loop(len(body), JobRequest.model_validate_json, body)
            result = await node.run_job(sender, job)
            size = len(getattr(result, "output_npy", None) or "")
            status = 200 if result.status == "ok" else 422  # failed in the worker: billed
            return status, await _off_loop(size, _encode, result), _JSON

        return await _guarded(request, handler)

    if node.edge is not None:
        from ..edge._state import MAX_UNMASK_BYTES

        edge = node.edge

        @app.post(
            "/v1/fl/unmask",
            summary="A secure round's unmask, for the client who paid its fit (signed)",
            responses={400: {}, 401: {}, 403: {}, 404: {}, 413: {}},
        )
        async def fl_unmask(request: Request) -> Response:
            async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
                return 200, await edge.unmask(sender, body), _JSON

            return await _guarded(request, handler, limit=min(max_body, MAX_UNMASK_BYTES))

    if node.oracle is not None:
        relay = node.oracle

        @app.post(
            "/v1/oracle/answers",
            summary="Another committee member's signed answer to an oracle request (signed)",
            responses={400: {}, 401: {}, 413: {}},
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {_JSON: {"schema": {"$ref": "#/components/schemas/AnswerMessage"}}},
                }
            },
        )
        async def oracle_answer(request: Request) -> Response:
            async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
                from ..oracle import parse_answer

                request_id, answer = parse_answer(body)
                await asyncio.to_thread(relay.receive, request_id, answer, sender)
                return 200, b'{"ok":true}', _JSON

            return await _guarded(request, handler, limit=16 * 1024)

    @app.post(
        "/v1/vouchers",
        summary="Hand over a voucher for delivered jobs (signed)",
        responses={400: {}, 401: {}, 403: {}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/VoucherSubmission"}}},
            }
        },
    )
    async def submit_voucher(request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            sub = VoucherSubmission.model_validate_json(body)
            accepted = await node.take_voucher(sender, sub.channel, sub.voucher)
            return 200, json.dumps({"accepted": accepted}).encode(), _JSON

        return await _guarded(request, handler)

    @app.post(
        "/v1/disputes/evidence",
        summary="Hand a committee member the evidence of a dispute it sits on (signed)",
        responses={400: {}, 401: {}, 404: {}, 413: {}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/DisputeEvidence"}}},
            }
        },
    )
    async def dispute_evidence(request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            if referee is None:
                raise NotFound("this node's deployment has no dispute contract")
            evidence = await asyncio.to_thread(DisputeEvidence.model_validate_json, body)
            said = await referee.take_evidence(evidence)
            return 200, json.dumps({"taken": said}).encode(), _JSON

        return await _guarded(request, handler)

    @app.post(
        "/v1/channels/close",
        summary="Close a channel now: redeem its latest voucher, refund the rest (signed)",
        responses={400: {}, 401: {}, 403: {}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ChannelClose"}}},
            }
        },
    )
    async def close_channel(request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            import json

            req = ChannelClose.model_validate_json(body)
            closed = await node.close_channel(sender, req.channel, req.voucher)
            return 200, json.dumps(closed).encode(), _JSON

        return await _guarded(request, handler)

    def _unknown(exc: UnknownRun) -> tuple[int, bytes, str]:
        return 404, json.dumps(_error_body(exc)).encode(), _JSON

    @app.post(
        "/v1/runs",
        status_code=202,
        summary="Start a run of a long kind, driven by the node (signed); its id at once",
        responses={400: {}, 401: {}, 402: {}, 403: {}, 429: {}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/RunRequest"}}},
            }
        },
    )
    async def start_run(request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            req = await _off_loop(len(body), RunRequest.model_validate_json, body)
            run = await runs.start(sender, req)
            return 202, RunStarted(run_id=run.id).model_dump_json().encode(), _JSON

        return await _guarded(request, handler)

    @app.get(
        "/v1/runs/{run_id}/events",
        summary="Follow a run (signed): server-sent events, from its first",
        responses={200: {"content": {"text/event-stream": {}}}, 401: {}, 403: {}, 404: {}},
    )
    async def run_events(run_id: str, request: Request) -> Response:
        found: list[Run] = []

        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            try:
                found.append(runs.get(sender, run_id))
            except UnknownRun as exc:
                return _unknown(exc)
            return 200, b"", _JSON

        response = await _guarded(request, handler)
        if not found:
            return response
        return StreamingResponse(
            runs.events(found[0]),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    @app.post(
        "/v1/runs/{run_id}/cancel",
        summary="Stop a run after the segment under way (signed)",
        responses={401: {}, 403: {}, 404: {}},
    )
    async def cancel_run(run_id: str, request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            try:
                run = runs.cancel(sender, run_id)
            except UnknownRun as exc:
                return _unknown(exc)
            return 200, json.dumps({"cancelled": True, "over": run.over}).encode(), _JSON

        return await _guarded(request, handler)

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # the request bodies above refer to their schemas: put those (and the models they
        # use) in the components, where the $refs point
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(_BODY_SCHEMAS)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI component schemas of ``models`` and of the models they use."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


_BODY_SCHEMAS = _schemas(
    JobRequest, VoucherSubmission, ChannelClose, RunRequest, DisputeEvidence, AnswerMessage
)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request body"
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()))
    return f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid"))
