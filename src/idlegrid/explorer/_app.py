"""The explorer's web app: HTML pages (Jinja2 + htmx), their JSON at stable URLs
(described in OpenAPI at ``/openapi.json``), and one server-sent event stream.

Pages render on the server from :mod:`._views`; htmx swaps the parts that change when
the live feed says the index moved (``/sse``: events ``block`` and ``activity``), and
ECharts draws each chart from the JSON route named in its ``data-src``. The vendored
scripts (htmx 2.0, its SSE extension, ECharts) come from the checkout's
``node_modules`` (``npm ci``), like anvil; without them the pages still render, with a
line that says what is missing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._exceptions import InvalidInput
from ..chain import Indexer
from . import _views as views
from ._figures import _short as short
from ._live import LiveFeed, as_json

__all__ = ["VENDOR", "create_app", "vendor_dir"]

HERE = Path(__file__).parent
#: the browser scripts, as npm installs them (package.json pins their versions)
VENDOR = {
    "htmx.min.js": ("htmx.org", "dist/htmx.min.js"),
    "sse.js": ("htmx-ext-sse", "dist/sse.js"),
    "echarts.min.js": ("echarts", "dist/echarts.min.js"),
}
MAX_BODY = 16 * 1024  # a receipt check's body


def vendor_dir() -> Path | None:
    """The ``node_modules`` folder holding the browser scripts, if installed: the
    checkout's (beside ``src/``) or the working directory's."""
    for base in (HERE.parents[2], Path.cwd()):
        candidate = base / "node_modules"
        if all((candidate / pkg / rel).is_file() for pkg, rel in VENDOR.values()):
            return candidate
    return None


def _time(ts: int | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def create_app(index: Indexer, feed: LiveFeed, *, title: str = "idlegrid explorer") -> FastAPI:
    """The explorer over ``index``; ``feed`` must be started by the caller (one poll
    for every viewer)."""
    app = FastAPI(
        title=title,
        version="1",
        description="The idlegrid network as its chain records it: providers, channels, "
        "disputes, models, federated runs, rewards and oracle requests. Every figure "
        "says whether it is observed on chain, derived from events, or unknown.",
        docs_url="/api/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    env = templates.env
    env.filters["short"] = short
    env.filters["time"] = _time
    vendor = vendor_dir()
    env.globals["vendor_ok"] = vendor is not None

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"as_of": feed.latest, "title": title, **context}
        )

    def found(value: Any, what: str) -> Any:
        if value is None:
            raise HTTPException(404, f"no {what} in the index")
        return value

    async def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a view in a thread (SQLite reads), translating bad input to 400."""
        try:
            return await asyncio.to_thread(fn, index, *args, **kwargs)
        except InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None

    @app.middleware("http")
    async def bounded_bodies(request: Request, call_next: Any) -> Response:
        """A body over ``MAX_BODY`` is refused before it is read (413)."""
        if request.method not in ("GET", "HEAD"):
            length = request.headers.get("content-length")
            if length is None or not length.isdigit() or int(length) > MAX_BODY:
                return JSONResponse(
                    {"detail": f"a body of at most {MAX_BODY} bytes, with its length"},
                    status_code=413,
                )
        response: Response = await call_next(request)
        return response

    # -- static -------------------------------------------------------------------------
    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in ("app.js", "app.css"):
            raise HTTPException(404, "no such file")
        return FileResponse(HERE / "static" / name)

    @app.get("/vendor/{name}", include_in_schema=False)
    async def vendored(name: str) -> FileResponse:
        if name not in VENDOR or vendor is None:
            raise HTTPException(404, "not installed: run `npm ci` in the idlegrid checkout")
        pkg, rel = VENDOR[name]
        return FileResponse(vendor / pkg / rel, media_type="text/javascript")

    # -- live ---------------------------------------------------------------------------
    @app.get("/sse", include_in_schema=False)
    async def sse(request: Request) -> StreamingResponse:
        queue = feed.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while not await request.is_disconnected():
                    try:
                        update = await asyncio.wait_for(queue.get(), timeout=15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield _sse("block", templates.get_template("_badge.html").render(as_of=update))
                    yield _sse("json", json.dumps(as_json(update)))
                    if update.events:
                        rows = views.activity_rows_of(update.events)
                        body = templates.get_template("_activity_rows.html").render(rows=rows)
                        yield _sse("activity", body)
            finally:
                feed.unsubscribe(queue)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    # -- JSON ---------------------------------------------------------------------------
    @app.get("/api/status", tags=["network"])
    async def api_status() -> dict[str, Any]:
        """The index's freshness: its last block, that block's time, the last poll."""
        return {**as_json(feed.latest), "viewers": feed.viewers, "polls": feed.polls}

    @app.get("/api/overview", tags=["network"])
    async def api_overview() -> dict[str, Any]:
        """The network at a glance, price per unit over time and tokens per hour."""
        return dict(await off_loop(views.overview))

    @app.get("/api/activity", tags=["network"])
    async def api_activity(
        after: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = 50,
    ) -> list[dict[str, Any]]:
        """The newest events of every contract (those after sequence ``after``)."""
        return list(await off_loop(views.activity_rows, after=after, limit=limit))

    @app.get("/api/providers", tags=["providers"])
    async def api_providers(
        sort: str = "stake",
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
        active: bool = False,
        after: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """Providers sorted, filtered and keyset-paged on the server."""
        got = await off_loop(
            views.providers_view,
            sort=sort,
            descending=order == "desc",
            active_only=active,
            after=after,
            limit=limit,
        )
        return dict(got.as_dict())

    @app.get("/api/providers/{address}", tags=["providers"])
    async def api_provider(address: str) -> dict[str, Any]:
        """One provider: stake, reputation and how it was earned, earnings over time."""
        return dict(found(await off_loop(views.provider_view, address), "such provider"))

    @app.get("/api/providers/{address}/earnings", tags=["providers"])
    async def api_earnings(
        address: str,
        since: Annotated[str | None, Query(max_length=10)] = None,
        until: Annotated[str | None, Query(max_length=10)] = None,
    ) -> dict[str, Any]:
        """A provider's earnings per UTC day over a date range (today's marked partial)."""
        got = await off_loop(views.earnings_view, address, since=since, until=until)
        return dict(found(got, "such provider"))

    @app.get("/api/channels/{channel}", tags=["providers"])
    async def api_channel(channel: str) -> dict[str, Any]:
        """One payment channel and its redeemed vouchers."""
        return dict(found(await off_loop(views.channel_view, channel), "such channel"))

    @app.post("/api/channels/{channel}/check-receipt", tags=["providers"])
    async def api_check_receipt(
        channel: str, receipt: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        """Whether a receipt (its fields and Merkle ``proof``) is under the channel's
        latest redeemed receipts root."""
        return dict(await off_loop(views.check_receipt, channel, receipt))

    @app.get("/api/disputes", tags=["disputes"])
    async def api_disputes(
        status: str | None = None,
        after: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """Disputes, newest first."""
        got = await off_loop(views.disputes_view, status=status, after=after, limit=limit)
        return dict(got.as_dict())

    @app.get("/api/disputes/{dispute}", tags=["disputes"])
    async def api_dispute(dispute: str) -> dict[str, Any]:
        """One dispute: its committee, votes and timeline from opening to ruling."""
        return dict(found(await off_loop(views.dispute_view, dispute), "such dispute"))

    @app.get("/api/models", tags=["models"])
    async def api_models(
        after: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """Registered models, newest first, keyset-paged."""
        got = await off_loop(views.models_view, after=after, limit=limit)
        return dict(got.as_dict())

    @app.get("/api/models/{model}", tags=["models"])
    async def api_model(model: str) -> dict[str, Any]:
        """A model's lineage graph, contributors and their shares, royalties paid."""
        return dict(found(await off_loop(views.model_view, model), "such model"))

    @app.get("/api/runs", tags=["models"])
    async def api_runs() -> list[dict[str, Any]]:
        """Federated runs, newest first."""
        return list(await off_loop(views.runs_view))

    @app.get("/api/runs/{run}", tags=["models"])
    async def api_run(run: str) -> dict[str, Any]:
        """A federated run round by round, with each contributor's posted share."""
        return dict(found(await off_loop(views.run_view, run), "such run"))

    @app.get("/api/oracle", tags=["oracle"])
    async def api_oracle(
        limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """Oracle requests from ask to callback, with their latency."""
        return dict(await off_loop(views.oracle_view, limit=limit))

    @app.get("/api/tx/{tx}", tags=["network"])
    async def api_tx(tx: str) -> list[dict[str, Any]]:
        """Every event of one transaction (404 if it has none the index follows)."""
        return list(found(await off_loop(views.tx_view, tx) or None, "such transaction"))

    @app.get("/api/search", tags=["network"])
    async def api_search(q: Annotated[str, Query(max_length=200)]) -> list[dict[str, str]]:
        """Where an address, transaction, job id, channel, dispute, model or run leads."""
        return list(await off_loop(views.search, q))

    # -- pages --------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request) -> HTMLResponse:
        data = await off_loop(views.overview)
        rows = await off_loop(views.activity_rows, limit=25)
        return page(request, "index.html", o=data, rows=rows)

    @app.get("/providers", response_class=HTMLResponse, include_in_schema=False)
    async def providers(
        request: Request,
        sort: str = "stake",
        order: str = "desc",
        active: bool = False,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = 20,
    ) -> HTMLResponse:
        got = await off_loop(
            views.providers_view,
            sort=sort,
            descending=order != "asc",
            active_only=active,
            after=after,
            limit=limit,
        )
        ctx = {
            "page": got, "sort": sort, "order": order, "active": active, "after": after,
            "limit": limit,
        }  # fmt: skip
        if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "table":
            return page(request, "_providers_table.html", **ctx)
        return page(request, "providers.html", **ctx)

    @app.get("/providers/{address}", response_class=HTMLResponse, include_in_schema=False)
    async def provider(request: Request, address: str) -> HTMLResponse:
        p = found(await off_loop(views.provider_view, address), "such provider")
        return page(request, "provider.html", p=p)

    @app.get("/channels/{channel}", response_class=HTMLResponse, include_in_schema=False)
    async def channel(request: Request, channel: str) -> HTMLResponse:
        c = found(await off_loop(views.channel_view, channel), "such channel")
        return page(request, "channel.html", c=c)

    @app.get("/disputes", response_class=HTMLResponse, include_in_schema=False)
    async def disputes(
        request: Request, status: str | None = None, after: int | None = None
    ) -> HTMLResponse:
        got = await off_loop(views.disputes_view, status=status or None, after=after, limit=20)
        return page(request, "disputes.html", page=got, status=status)

    @app.get("/disputes/{dispute}", response_class=HTMLResponse, include_in_schema=False)
    async def dispute(request: Request, dispute: str) -> HTMLResponse:
        d = found(await off_loop(views.dispute_view, dispute), "such dispute")
        return page(request, "dispute.html", d=d)

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    async def models(
        request: Request, after: Annotated[int | None, Query(ge=0)] = None
    ) -> HTMLResponse:
        got = await off_loop(views.models_view, after=after, limit=20)
        runs = await off_loop(views.runs_view)
        return page(request, "models.html", page=got, runs=runs, after=after)

    @app.get("/models/{model}", response_class=HTMLResponse, include_in_schema=False)
    async def model(request: Request, model: str) -> HTMLResponse:
        m = found(await off_loop(views.model_view, model), "such model")
        return page(request, "model.html", mo=m)

    @app.get("/runs/{run}", response_class=HTMLResponse, include_in_schema=False)
    async def run(request: Request, run: str) -> HTMLResponse:
        r = found(await off_loop(views.run_view, run), "such run")
        return page(request, "run.html", r=r)

    @app.get("/oracle", response_class=HTMLResponse, include_in_schema=False)
    async def oracle(request: Request) -> HTMLResponse:
        return page(request, "oracle.html", o=await off_loop(views.oracle_view))

    @app.get("/tx/{tx}", response_class=HTMLResponse, include_in_schema=False)
    async def tx(request: Request, tx: str) -> HTMLResponse:
        rows = found(await off_loop(views.tx_view, tx) or None, "such transaction")
        return page(request, "tx.html", tx=tx, rows=rows)

    @app.get("/search", include_in_schema=False)
    async def search_page(request: Request, q: str = "") -> Response:
        hits = await off_loop(views.search, q[:200]) if q.strip() else []
        if len(hits) == 1:
            return RedirectResponse(hits[0]["url"], status_code=303)
        return page(request, "search.html", q=q, hits=hits)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        body = templates.get_template("error.html").render(
            status=exc.status_code, detail=exc.detail, as_of=feed.latest, title=title
        )
        return HTMLResponse(body, status_code=exc.status_code)

    return app


def _sse(event: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n"
