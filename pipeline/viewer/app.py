"""The review viewer's FastAPI app: server-rendered pages, stable URLs, no JS framework.

    /                         tasks overview (counts, reviews, report plots)
    /items?task=&split=&status=&subtask=&prompt_version=&q=&sort=&page=   item list
    /items/<item_id>          one item: text, clips with audio players, facts, CLAP, lineage
    /items/<item_id>/review   POST accept/reject (form: decision, reason, reviewer)
    /audio/<clip_id>          the clip's encoded audio (audio/* type, HTTP range requests)
    /reports/<task>/<file>    the PNG plots `forge report` wrote under <warehouse>/reports/

Unknown ids get a 404 page. The app only reads the catalog, except for appending reviews.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.storage import Warehouse
from pipeline.storage.warehouse import new_run_id
from pipeline.viewer import audio, queries
from pipeline.viewer.reviews import ReviewError, record_review

TEMPLATES = Path(__file__).resolve().parent / "templates"
_PLOT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+\.png$")
_MAX_FORM_BYTES = 16 * 1024


def create_app(warehouse: Warehouse, reviewer: str = "reviewer") -> FastAPI:
    """The viewer over `warehouse`; `reviewer` is the default name on review forms."""
    app = FastAPI(title="auditory-forge review viewer", docs_url=None, redoc_url=None)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.1f} %"
    env.filters["num"] = lambda v, digits=3: "—" if v is None else f"{v:.{digits}f}"
    session_run_id = "viewer-" + new_run_id()
    warehouse.ensure_catalog()

    def page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code)

    def not_found(what: str) -> HTMLResponse:
        return page("error.html", status_code=404, title="Not found", message=what)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return not_found(f"No page at {request.url.path}")
        return page("error.html", exc.status_code, title=str(exc.status_code), message=exc.detail)

    @app.get("/", response_class=HTMLResponse)
    def overview() -> HTMLResponse:
        rows = queries.task_overview(warehouse)
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        return page("index.html", rows=rows, tasks=tasks, plots=_plots(warehouse, tasks))

    @app.get("/items", response_class=HTMLResponse)
    def item_list(request: Request) -> HTMLResponse:
        params = {k: v for k, v in request.query_params.items() if v != ""}
        query = queries.ItemQuery.model_validate(params)
        rows, total = queries.list_items(warehouse, query)
        pages = max(1, -(-total // queries.PAGE_SIZE))

        def link(**change: Any) -> str:
            merged = {**params, **{k: str(v) for k, v in change.items()}}
            return "/items?" + urlencode(merged)

        return page(
            "items.html",
            rows=rows,
            total=total,
            query=query,
            pages=pages,
            link=link,
            choices=queries.filter_choices(warehouse),
            statuses=queries.STATUSES,
            sorts=list(queries.SORTS),
        )

    @app.get("/items/{item_id}", response_class=HTMLResponse)
    def item_page(item_id: str, error: str | None = None) -> HTMLResponse:
        item = queries.item_detail(warehouse, item_id)
        if item is None:
            return not_found(f"Unknown item id {item_id!r}")
        return page("item.html", item=item, reviewer=reviewer, error=error)

    @app.post("/items/{item_id}/review")
    async def review(item_id: str, request: Request) -> Response:
        body = (await request.body())[:_MAX_FORM_BYTES].decode("utf-8", errors="replace")
        form = {k: v[0] for k, v in parse_qs(body).items()}
        if queries.item_detail(warehouse, item_id) is None:
            return not_found(f"Unknown item id {item_id!r}")
        try:
            record_review(
                warehouse,
                item_id,
                form.get("decision", ""),
                form.get("reviewer", ""),
                form.get("reason"),
                session_run_id,
            )
        except ReviewError as exc:
            return RedirectResponse(
                f"/items/{item_id}?" + urlencode({"error": str(exc)}), status_code=303
            )
        return RedirectResponse(f"/items/{item_id}", status_code=303)

    @app.get("/audio/{clip_id:path}")
    def clip_audio(clip_id: str, request: Request) -> Response:
        clip = queries.clip_row(warehouse, clip_id)
        if clip is None:
            return not_found(f"Unknown clip id {clip_id!r}")
        try:
            extent = audio.locate(clip)
        except audio.AudioNotServable as exc:
            return not_found(str(exc))
        headers = {"Accept-Ranges": "bytes"}
        try:
            wanted = audio.parse_range(request.headers.get("range"), extent.size)
        except audio.RangeNotSatisfiable:
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{extent.size}"}
            )
        first, last = wanted or (0, extent.size - 1)
        headers["Content-Length"] = str(last - first + 1)
        if wanted:
            headers["Content-Range"] = f"bytes {first}-{last}/{extent.size}"
        return StreamingResponse(
            audio.read_extent(extent, first, last),
            status_code=206 if wanted else 200,
            media_type=extent.content_type,
            headers=headers,
        )

    @app.get("/reports/{task}/{name}")
    def report_plot(task: str, name: str) -> Response:
        base = (warehouse.root / "reports").resolve()
        path = (base / task / name).resolve()
        if not _PLOT_NAME.match(name) or not path.is_relative_to(base) or not path.is_file():
            return not_found(f"No plot {task}/{name}")
        return FileResponse(path, media_type="image/png")

    return app


def _plots(warehouse: Warehouse, tasks: list[str]) -> dict[str, list[str]]:
    """task → PNG file names under <warehouse>/reports/<task>/ (written by `forge report`)."""
    base = warehouse.root / "reports"
    return {
        task: sorted(p.name for p in (base / task).glob("*.png")) if (base / task).is_dir() else []
        for task in tasks
    }
