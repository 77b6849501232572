"""The dashboard's web app (Starlette): pages, their JSON, live updates, and two actions.

Routes: ``/now``, ``/jobs/{id}``, ``/money?by=provider|owner|project``, ``/reliability`` (HTML);
the same data as JSON under ``/api/...``; ``/live/now`` and ``/live/jobs/{id}`` stream the live
part of a page as server-sent events (an ``update`` event carrying the re-rendered HTML
fragment every ``live_interval`` seconds: no client-side templating, the escaping stays on the
server); ``POST /jobs/{id}/cancel`` and ``POST /resources/{id}/release`` are the only writes.

Security decisions:

* **Token.** With a ``token`` (the CLI sets one whenever it binds beyond loopback) every request
  must carry it: ``?token=`` (the printed URL; answered with an HttpOnly, SameSite=Strict
  cookie so links and the event stream need not repeat it), the cookie, or
  ``Authorization: Bearer``. Anything else gets 401, the static files included. Compared in
  constant time.
* **CSRF.** Each action is a form POST carrying a token derived from a random per-process
  secret (a synchronizer token: another site cannot read a page to learn it); a POST without
  it, or whose ``Origin`` is not this server, gets 403 and changes nothing.
* **Same checks as the CLI.** Cancel is :func:`runctl.workflows.jobs.cancel_job` (graceful:
  the script saves its checkpoint). Release goes through the registry's lifecycle
  (:func:`runctl.providers.registry.lifecycle`: verified, retried) and is offered only for a
  resource the Now page flags as leaked (never a persistent one, never one whose job runs).
* **Nothing secret on a page.** Every value is escaped (:mod:`runctl.web.pages`); log tails
  are masked by the log redactor; a failed release shows the error's class and hint, not the
  provider's raw answer (that goes to the dashboard's own log, redacted). Pages carry a strict
  Content-Security-Policy (no inline script, nothing from another origin) and
  ``Referrer-Policy: same-origin``, so the token never leaks in a Referer header to another
  site (``no-referrer`` would also make the browser send ``Origin: null`` on the actions).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runctl.core.errors import NotFoundError, RunctlError
from runctl.web import pages
from runctl.workflows import dashboard as views

if TYPE_CHECKING:
    from runctl.core.config import Config
    from runctl.core.ledger import Ledger

log = logging.getLogger("runctl.dashboard")
T = TypeVar("T")

TOKEN_COOKIE = "runctl_dashboard_token"
STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class TokenGate:
    """ASGI middleware: the token check (when a token is set) and the security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token")
        if self.token is not None and not self._allowed(request, from_query):
            refused = Response(
                "401: this dashboard needs its token: open the URL 'runctl dashboard' printed\n",
                status_code=401,
                media_type="text/plain",
                headers={"www-authenticate": "Bearer", **SECURITY_HEADERS},
            )
            await refused(scope, receive, send)
            return
        set_cookie = self.token is not None and from_query is not None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if set_cookie:
                    cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _allowed(self, request: Request, from_query: str | None) -> bool:
        auth = request.headers.get("authorization", "")
        given = [from_query, request.cookies.get(TOKEN_COOKIE), auth.removeprefix("Bearer ").strip() or None]
        assert self.token is not None
        return any(g is not None and hmac.compare_digest(g.encode(), self.token.encode()) for g in given)


class ViewCache:
    """Money and Reliability read the whole ledger (every job, resource and usage interval).
    Each is computed once and served again while the ledger is unchanged
    (:meth:`~runctl.core.ledger.Ledger.change_mark`) and younger than :data:`MAX_AGE_S` (open
    intervals keep billing without a write), so reloads and several open tabs cost one
    computation, and a page is never older than the ledger's last change or 10 seconds."""

    MAX_AGE_S = 10.0

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int], float, Any]] = {}

    def get(self, name: str, compute: Callable[[], T]) -> T:
        with self._lock:  # one computation at a time: a second tab waits for the first's result
            mark, now = self.ledger.change_mark(), time.monotonic()
            entry = self._entries.get(name)
            if entry is not None and entry[0] == mark and now - entry[1] < self.MAX_AGE_S:
                found: T = entry[2]
                return found
            value = compute()
            self._entries[name] = (mark, now, value)
            return value


@dataclass
class Dashboard:
    """What the routes share: the ledger, the config (budgets; providers for release), the
    CSRF token and how often live regions refresh."""

    ledger: Ledger
    config: Config
    csrf: str
    live_interval: float
    cache: ViewCache
    stopping: Callable[[], bool]

    # -- pages and their JSON ------------------------------------------------------------------

    def now(self, request: Request) -> Response:
        return HTMLResponse(pages.now_page(views.now_view(self.ledger), self.csrf))

    def api_now(self, request: Request) -> Response:
        return JSONResponse(views.now_view(self.ledger).to_dict())

    def job(self, request: Request) -> Response:
        view = self._job_view(request)
        if isinstance(view, Response):
            return view
        return HTMLResponse(pages.job_page(view, self.csrf))

    def api_job(self, request: Request) -> Response:
        view = self._job_view(request)
        return view if isinstance(view, Response) else JSONResponse(view.to_dict())

    def _job_view(self, request: Request) -> views.JobView | Response:
        try:
            return views.job_view(self.ledger, request.path_params["job_id"])
        except NotFoundError as exc:
            return _refusal(404, "Not found", exc, api=request.url.path.startswith("/api/"))
        except RunctlError as exc:  # an ambiguous id prefix
            return _refusal(400, "Bad job id", exc, api=request.url.path.startswith("/api/"))

    def _by(self, request: Request) -> str | Response:
        by = request.query_params.get("by", "provider")
        if by not in views.MONEY_GROUPINGS:
            message = f"by must be one of {', '.join(views.MONEY_GROUPINGS)}"
            if request.url.path.startswith("/api/"):
                return JSONResponse({"error": message}, status_code=400)
            return HTMLResponse(pages.message_page(400, "Bad request", message), status_code=400)
        return by

    def money(self, request: Request) -> Response:
        by = self._by(request)
        if isinstance(by, Response):
            return by
        return HTMLResponse(pages.money_page(self._money(), by))

    def api_money(self, request: Request) -> Response:
        by = self._by(request)
        if isinstance(by, Response):
            return by
        return JSONResponse(self._money().to_dict())

    def _money(self) -> views.MoneyView:
        return self.cache.get("money", lambda: views.money_view(self.ledger, limits=self.config.cost))

    def reliability(self, request: Request) -> Response:
        return HTMLResponse(pages.reliability_page(self._reliability()))

    def api_reliability(self, request: Request) -> Response:
        return JSONResponse(self._reliability().to_dict())

    def _reliability(self) -> views.ReliabilityView:
        return self.cache.get("reliability", lambda: views.reliability_view(self.ledger))

    # -- live ----------------------------------------------------------------------------------

    async def live_now(self, request: Request) -> Response:
        return self._stream(request, lambda: pages.now_fragment(views.now_view(self.ledger), self.csrf))

    async def live_job(self, request: Request) -> Response:
        view = await run_in_threadpool(self._job_view, request)
        if isinstance(view, Response):
            return view
        job_id = view.job.id
        return self._stream(
            request, lambda: pages.job_fragment(views.job_view(self.ledger, job_id), self.csrf)
        )

    def _stream(self, request: Request, render: Callable[[], str]) -> StreamingResponse:
        """Server-sent events: the fragment ``render`` makes, now and every ``live_interval``
        seconds, until the browser goes away or the server stops. Nothing is kept between
        updates (no growth over hours)."""

        async def gone() -> bool:
            return self.stopping() or await request.is_disconnected()

        async def events() -> AsyncIterator[str]:
            while not await gone():
                fragment = await anyio.to_thread.run_sync(render)
                yield "event: update\n" + "".join(f"data: {line}\n" for line in fragment.split("\n")) + "\n"
                with anyio.move_on_after(self.live_interval):
                    while not await gone():
                        await anyio.sleep(min(self.live_interval, 0.25))

        headers = {"x-accel-buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    # -- the two actions -----------------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        refused = await self._csrf_refusal(request)
        if refused is not None:
            return refused
        from runctl.workflows.jobs import cancel_job

        try:
            job = await run_in_threadpool(cancel_job, self.ledger, request.path_params["job_id"])
        except RunctlError as exc:  # unknown id, already ended, not cancellable: runctl's own words
            return _refusal(404 if isinstance(exc, NotFoundError) else 409, "Not cancelled", exc)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    async def release(self, request: Request) -> Response:
        refused = await self._csrf_refusal(request)
        if refused is not None:
            return refused
        resource_id = request.path_params["resource_id"]
        live = {r.resource.id: r for r in (await run_in_threadpool(views.now_view, self.ledger)).resources}
        item = live.get(resource_id)
        if item is None or not item.releasable:
            message = f"resource {resource_id} is not one the dashboard can release"
            hint = "only a live resource whose job ended (and not a persistent one) is released here"
            return HTMLResponse(pages.message_page(409, "Not released", message, hint), status_code=409)
        try:
            await run_in_threadpool(self._release, item.resource)
        except RunctlError as exc:
            log.warning("release of %s failed: %s", resource_id, exc)  # redacted by the log filter
            message = f"releasing {resource_id} failed ({type(exc).__name__}); the dashboard's log says why"
            return HTMLResponse(pages.message_page(502, "Not released", message, exc.hint), status_code=502)
        return RedirectResponse("/now", status_code=303)

    def _release(self, resource: Any) -> None:
        from runctl.providers import registry

        registry.lifecycle(self.ledger, self.config, [resource.provider]).release(resource)

    async def _csrf_refusal(self, request: Request) -> Response | None:
        body = (await request.body()).decode("utf-8", errors="replace")
        given = (parse_qs(body).get("csrf") or [""])[0]
        origin = request.headers.get("origin")
        same_origin = origin is None or urlsplit(origin).netloc == request.headers.get("host")
        if same_origin and hmac.compare_digest(given.encode(), self.csrf.encode()):
            return None
        message = "this action needs the form's CSRF token, from this dashboard's own page"
        return HTMLResponse(pages.message_page(403, "Forbidden", message), status_code=403)

    # -- assets --------------------------------------------------------------------------------

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return Response("not found\n", status_code=404, media_type="text/plain")
        data = resources.files("runctl.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC_FILES[name])


def _refusal(status: int, title: str, exc: RunctlError, *, api: bool = False) -> Response:
    if api:
        return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=status)
    return HTMLResponse(pages.message_page(status, title, exc.message, exc.hint), status_code=status)


def create_app(
    ledger: Ledger,
    config: Config,
    *,
    token: str | None = None,
    live_interval: float = 2.0,
    stopping: Callable[[], bool] = lambda: False,
) -> ASGIApp:
    """The dashboard over ``ledger``; with ``token``, every request must carry it. ``stopping``
    says when the server is shutting down: open event streams end then."""
    secret = secrets.token_bytes(32)
    csrf = hmac.new(secret, b"runctl-dashboard-csrf", hashlib.sha256).hexdigest()
    board = Dashboard(ledger, config, csrf, live_interval, ViewCache(ledger), stopping)
    routes = [
        Route("/", lambda request: RedirectResponse("/now", status_code=307)),
        Route("/now", board.now),
        Route("/jobs/{job_id}", board.job),
        Route("/money", board.money),
        Route("/reliability", board.reliability),
        Route("/api/now", board.api_now),
        Route("/api/jobs/{job_id}", board.api_job),
        Route("/api/money", board.api_money),
        Route("/api/reliability", board.api_reliability),
        Route("/live/now", board.live_now),
        Route("/live/jobs/{job_id}", board.live_job),
        Route("/jobs/{job_id}/cancel", board.cancel, methods=["POST"]),
        Route("/resources/{resource_id}/release", board.release, methods=["POST"]),
        Route("/static/{name}", board.static),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    return TokenGate(Starlette(routes=routes), token)
