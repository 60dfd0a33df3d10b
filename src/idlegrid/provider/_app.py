"""The provider's HTTP API (FastAPI): thin routes over :class:`ProviderNode`.

Every route that matters takes a signed request (see ``protocol._envelope``)
and answers with a signed response. Errors map to status codes with a JSON
body ``{"error": <class>, "reason": <text>}``: 400 bad input, 401 unsigned /
expired / replayed / bad signature, 402 the channel cannot pay, 403 signed by
someone not allowed, 404 unknown blob, 409 duplicate job, 413 too large,
422 the job itself failed (crashed, timed out, raised), 503 busy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ValidationError

from .. import __version__
from .._exceptions import (
    BadSignature,
    BlobNotFound,
    IdlegridError,
    InvalidInput,
    PayloadTooLarge,
    UnavailableError,
)
from ..protocol import (
    JobRequest,
    JobResult,
    NodeInfo,
    ReplayGuard,
    VoucherSubmission,
    sign_response,
    verify_request,
)
from ._book import PaymentRequired
from ._errors import ExecutorBusy, JobCrashed, JobFailed, JobTimeout
from ._journal import DuplicateJob
from ._node import ProviderNode, Unauthorized

__all__ = ["create_app"]

log = logging.getLogger("idlegrid.provider")

_STATUS: list[tuple[type[Exception], int]] = [
    (Unauthorized, 403),
    (BadSignature, 401),
    (PaymentRequired, 402),
    (DuplicateJob, 409),
    (BlobNotFound, 404),
    (PayloadTooLarge, 413),
    (ExecutorBusy, 503),
    (JobTimeout, 422),
    (JobCrashed, 422),
    (JobFailed, 422),
    (InvalidInput, 400),
    (UnavailableError, 503),
    (IdlegridError, 400),
]

_JSON = "application/json"


def _status(exc: Exception) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _error_body(exc: Exception) -> dict[str, str]:
    return {"error": type(exc).__name__, "reason": str(exc)[:1000]}


def create_app(node: ProviderNode, *, redeem_interval: float = 1.0) -> FastAPI:
    """The FastAPI application of one node; starts the redeemer, redeems on shutdown."""
    replay = ReplayGuard()
    max_body = node.config.max_request_bytes

    async def lifespan(app: FastAPI) -> Any:
        task = asyncio.create_task(node.redeem_loop(redeem_interval))
        try:
            yield
        finally:
            task.cancel()
            try:
                await asyncio.to_thread(node.redeem_due, force=True)
            except IdlegridError as exc:
                log.warning("redemption at shutdown failed: %s", exc)
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

    async def _signed(request: Request) -> tuple[str, bytes, bytes]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise PayloadTooLarge(f"request body larger than {max_body} bytes")
        body = await request.body()
        if len(body) > max_body:
            raise PayloadTooLarge(f"request body larger than {max_body} bytes")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            sender, digest = verify_request(
                node.domain,
                node.address,
                request.method,
                path,
                body,
                request.headers,
                replay=replay,
            )
        except InvalidInput as exc:  # a sender header that is not an address
            raise BadSignature(f"malformed signature headers: {exc}") from exc
        return sender, digest, body

    def _reply(
        sender: str, digest: bytes, status: int, body: bytes, media: str = _JSON
    ) -> Response:
        headers = sign_response(node.account, node.domain, sender, digest, status, body)
        return Response(body, status_code=status, media_type=media, headers=headers)

    async def _guarded(request: Request, handler: Any) -> Response:
        sender = ""
        digest = b""
        try:
            sender, digest, body = await _signed(request)
            status, payload, media = await handler(sender, body)
            return _reply(sender, digest, status, payload, media)
        except ValidationError as exc:
            err = {"error": "InvalidInput", "reason": _first_error(exc)}
            return _error(sender, digest, 400, err)
        except IdlegridError as exc:
            return _error(sender, digest, _status(exc), _error_body(exc))

    def _error(sender: str, digest: bytes, status: int, err: dict[str, str]) -> Response:
        import json

        body = json.dumps(err).encode()
        if digest:
            return _reply(sender, digest, status, body)
        return Response(body, status_code=status, media_type=_JSON)

    @app.get("/v1/health", summary="Liveness probe (unsigned)")
    async def health() -> dict[str, Any]:
        return {"ok": True, "address": node.address, "time": time.time()}

    @app.get("/v1/info", response_model=NodeInfo, summary="Who this node is (unsigned)")
    async def info() -> NodeInfo:
        return node.info()

    @app.get("/v1/stats", summary="Counters (unsigned)")
    async def stats() -> dict[str, Any]:
        s = node.executor.stats()
        return {
            "jobs_ok": node.stats.jobs_ok,
            "jobs_failed": node.stats.jobs_failed,
            "vouchers": node.stats.vouchers,
            "redemptions": node.stats.redemptions,
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
            stored = await asyncio.to_thread(node.store.put, body, expected=digest)
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
            data = await asyncio.to_thread(node.store.get, digest)
            return 200, data, "application/octet-stream"

        return await _guarded(request, handler)

    @app.head("/v1/blobs/{digest}", summary="Is this blob stored? (unsigned)")
    async def has_blob(digest: str) -> Response:
        try:
            found = node.store.has(digest)
        except InvalidInput:
            return Response(status_code=400)
        return Response(status_code=200 if found else 404)

    @app.post(
        "/v1/jobs",
        summary="Run a job (signed request, signed response)",
        response_model=JobResult,
        responses={400: {}, 401: {}, 402: {}, 403: {}, 404: {}, 409: {}, 413: {}, 422: {}, 503: {}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"$ref": "#/components/schemas/JobRequest"}}},
            }
        },
    )
    async def submit_job(request: Request) -> Response:
        async def handler(sender: str, body: bytes) -> tuple[int, bytes, str]:
            job = JobRequest.model_validate_json(body)
            result = await node.run_job(sender, job)
            return 200, result.model_dump_json().encode(), _JSON

        return await _guarded(request, handler)

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
            import json

            return 200, json.dumps({"accepted": accepted}).encode(), _JSON

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


def _schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI component schemas of ``models`` and of the models they use."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


_BODY_SCHEMAS = _schemas(JobRequest, VoucherSubmission)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request body"
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()))
    return f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid"))
