"""The HTTP shim: Segment's tracking API in front of the engine (Starlette, served by uvicorn).

    POST /v1/identify|track|page|screen|group|alias    one message (/v1/i, /v1/t, ... too)
    POST /v1/batch, /v1/import, /v1/b                   {"batch": [...], "context", "integrations"}
    POST /v1/preview/{destination}                      the outcomes of one message (redacted)
    GET  /v1/recorded                                   dry-run: what would have been sent
    GET  /v1/dead-letters                               what finally failed, with the answer
    GET  /tester, /tester/api/...                       the event tester (config `tester: true`)
    POST|PUT|PATCH /webhook/{source}                    a Segment Webhooks destination's calls
    POST /inbound/{mapping}                             input for an inbound mapping
    GET  /health, /ready, /metrics, /openapi.json (this API, described)

Every message goes through the one intake (engine.intake): `{"success": true}` is answered
only after every request it maps to is committed to the outbox. Every error is a JSON body
`{"success": false, "code", "message"}`, the unexpected ones too. Delivery runs beside the
app: in a process of its own under `engine serve`, or on the app's event loop (create_app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config, Source, SourceConfig
from ..delivery import Outbox, open_outbox
from ..delivery.outbox import job_counts, recorded_view
from ..delivery.worker import Deliverer
from ..errors import BadRequest, EngineError, StoreError, StoreUnavailable
from ..intake import EventResult, Intake
from ..mapping.preview import preview
from ..metrics import Metrics
from ..normalize import enrich
from ..redact import redact
from .group_commit import GroupCommit
from .openapi import openapi_document
from .tester import FILES as TESTER_FILES
from .tester import HEADERS as TESTER_HEADERS
from .tester import destinations_view, preview_text
from .tester import read_file as tester_file_bytes
from .bodies import BodyBudget, declared_length, read_body
from .tracking_api import (CALL_TYPES, MAX_BATCH, MAX_MESSAGE, MAX_WEBHOOK_MESSAGES, SHORT_PATHS,
                           Checked, body_signer, decode_body, message_problem, messages_of,
                           verify_signature, write_key_from)

__all__ = ["create_app"]

log = logging.getLogger("engine.http")


@dataclass
class _State:
    config: Config
    outbox: Outbox
    intake: Intake
    metrics: Metrics
    commits: GroupCommit
    bodies: BodyBudget
    """The large bodies (webhooks) read and handled at once hold this many bytes at most."""
    deliverer: Deliverer | None = None
    delivery: DeliveryHandle | None = None
    draining: bool = False
    store_problem: str | None = None
    """Why the last commit failed (StoreUnavailable), until one succeeds: /health says it."""

    def store_failed(self, exc: StoreUnavailable) -> None:
        """Note a failed commit; the first of a kind is logged (not one line a request)."""
        if self.store_problem != str(exc):
            log.error("the outbox cannot take events: %s; answering 503 until it can", exc)
        self.store_problem = str(exc)

    def store_works(self) -> None:
        if self.store_problem is not None:
            log.warning("the outbox takes events again (it failed: %s)", self.store_problem)
            self.store_problem = None


def _error(message: str, status: int = 400, code: str = "invalid_request") -> JSONResponse:
    return JSONResponse({"success": False, "code": code, "message": message}, status_code=status)


async def _read(request: HTTPRequest, limit: int = MAX_BATCH) -> Any:
    """The decoded JSON body (gunzipped if need be), never more than `limit` bytes."""
    return decode_body(await read_body(request, limit), request.headers.get("content-encoding"), limit)


def _state(request: HTTPRequest) -> _State:
    state: _State = request.app.state.shim
    return state


def _source(state: _State, request: HTTPRequest, body: Any) -> SourceConfig:
    key = write_key_from(request.headers.get("authorization"), body)
    if key is None:
        raise BadRequest("no write key: send it as Basic auth (the username) or as writeKey", 401)
    source = state.config.source_for_key(key)
    if source is None:
        raise BadRequest("unknown write key", 401)
    return source


async def _accept(state: _State, source: Source, events: list[Any]) -> list[EventResult]:
    """Take `events` in through the intake (a commit shared with concurrent requests, off
    the event loop); durable when it returns."""
    try:
        results, stored = await state.commits.accept(source, events)
    except StoreUnavailable as exc:
        state.store_failed(exc)
        raise
    state.store_works()
    if stored.stored:
        if state.deliverer is not None:
            state.deliverer.wakeup.set()
        if state.delivery is not None:
            state.delivery.wake()
    return results


def _enriched(source: SourceConfig, checked: list[Checked], sent_at: Any = None,
              ip: str | None = None) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    """Segment messages enriched as the tracking API does (`ip`: the client's, for those
    with no `context.ip`): the ones rejected (`{"index", "message"}`), and the others with
    their index."""
    received_at = datetime.now(timezone.utc)
    rejected: list[dict[str, Any]] = []
    kept: list[tuple[int, dict[str, Any]]] = []
    for index, (message, problem) in enumerate(checked):
        if problem is not None:
            rejected.append({"index": index, "message": problem})
        else:
            kept.append((index, enrich(message, source.name, received_at, sent_at, ip)))
    return rejected, kept


async def _accept_messages(state: _State, source: SourceConfig, checked: list[Checked],
                           sent_at: Any = None, ip: str | None = None) -> JSONResponse:
    """Enrich Segment messages, take them in, and answer with the ones rejected (`{"index",
    "message"}`); the others are kept. Many messages (a batch) are enriched off the event
    loop: that is work in proportion to their size, and /health must not wait for it."""
    if len(checked) > 1:
        rejected, kept = await asyncio.to_thread(_enriched, source, checked, sent_at, ip)
    else:
        rejected, kept = _enriched(source, checked, sent_at, ip)
    results = await _accept(state, source, [message for _, message in kept])
    for (index, _), result in zip(kept, results, strict=True):
        if result.error is not None:
            rejected.append({"index": index, "message": result.error})
    rejected.sort(key=lambda r: r["index"])
    total = len(checked)
    if total and len(rejected) == total:
        if total == 1:
            return _error(rejected[0]["message"], code="invalid_message")
        return JSONResponse({"success": False, "code": "invalid_messages",
                             "message": "no message in the batch is valid", "rejected": rejected},
                            status_code=400)
    reply: dict[str, Any] = {"success": True}
    if rejected:
        reply["rejected"] = rejected
    return JSONResponse(reply)


async def tracking(request: HTTPRequest) -> Response:
    state = _state(request)
    call = request.path_params["call"]
    call = SHORT_PATHS.get(call, call)
    if call not in CALL_TYPES and call not in ("batch", "import"):
        raise BadRequest(f"no such endpoint: POST /v1/{call}", 404)
    body = await _read(request, MAX_MESSAGE if call in CALL_TYPES else MAX_BATCH)
    source = _source(state, request, body)
    # A browser or server library calls here itself: its address is the event's context.ip.
    # Every X-Forwarded-For line, in order: a proxy may add its own after the client's.
    forwarded = ", ".join(request.headers.getlist("x-forwarded-for")) or None
    ip = state.config.client_ip(request.client.host if request.client else None, forwarded)
    if call in CALL_TYPES:
        return await _accept_messages(state, source, messages_of(body, call), ip=ip)
    # A batch's shared parts are measured once, yet merging them into each message is
    # still work in proportion to the batch: off the event loop.
    checked = await asyncio.to_thread(messages_of, body, None)
    return await _accept_messages(state, source, checked, body.get("sentAt"), ip)


LARGE_BODY = 1024 * 1024
"""Bytes of a body past which it is decoded off the event loop."""


async def webhook(request: HTTPRequest) -> Response:
    """A Segment Webhooks destination's call. Its size is bounded (the source's
    webhook_max_body, from Content-Length before reading, then as it streams), it holds its
    share of the body budget while handled, and its signature is computed as it arrives:
    a body with a wrong one is never decoded."""
    state = _state(request)
    source = state.config.source(request.path_params["source"])
    if source is None:
        raise BadRequest("unknown source", 404)
    limit = source.webhook_max_body
    encoding = request.headers.get("content-encoding")
    declared = declared_length(request)
    # A compressed body inflates up to the limit: it holds that much.
    holds = limit if encoding or declared is None else min(declared, limit)
    signer = body_signer(source.webhook_secret) if source.webhook_secret else None
    async with state.bodies.hold(holds):
        raw = await read_body(request, limit, too_large=413, signer=signer)
        verify_signature(source.webhook_secret, raw, request.headers.get("x-signature"),
                         first_event=source.webhook_signature == "first_event",
                         body_digest=signer.hexdigest() if signer is not None else None)
        try:
            body = (await asyncio.to_thread(decode_body, raw, encoding, limit) if len(raw) > LARGE_BODY
                    else decode_body(raw, encoding, limit))
        except BadRequest as exc:
            if exc.message.startswith("the body is larger than"):  # inflated past the limit
                raise BadRequest(exc.message, 413, "too_large") from None
            raise
        del raw
        messages = body if isinstance(body, list) else [body]
        if len(messages) > MAX_WEBHOOK_MESSAGES:
            raise BadRequest(f"a webhook batch holds at most {MAX_WEBHOOK_MESSAGES} events")
        checked = await asyncio.to_thread(lambda: [(m, message_problem(m)) for m in messages])
        return await _accept_messages(state, source, checked)


async def inbound(request: HTTPRequest) -> Response:
    state = _state(request)
    slug = request.path_params["mapping"]
    source = state.config.inbound.get(slug)
    if source is None:
        raise BadRequest(f"no inbound mapping '{slug}' is configured", 404)
    signer = body_signer(source.secret) if source.secret else None
    raw = await read_body(request, MAX_BATCH, too_large=413, signer=signer)
    verify_signature(source.secret, raw, request.headers.get("x-signature"),
                     body_digest=signer.hexdigest() if signer is not None else None)
    body = decode_body(raw, request.headers.get("content-encoding"))
    items = body if isinstance(body, list) else [body]
    replies: list[dict[str, Any]] = []
    for index, result in enumerate(await _accept(state, source, items)):
        if result.error is not None or result.rejected:
            error = result.error if result.error is not None else result.rejected[0].reason
            replies.append({"index": index, "error": error})
            continue
        replies += [{"index": index, "stored": r.rule} for r in result.requests]
        replies += [{"index": index, "skipped": s.reason} for s in result.skipped]
    if len(items) == 1 and "error" in replies[0]:
        raise BadRequest(replies[0]["error"], code="invalid_message")
    return JSONResponse({"success": True, "results": replies})


async def preview_endpoint(request: HTTPRequest) -> Response:
    state = _state(request)
    body = await _read(request, MAX_MESSAGE)
    source = _source(state, request, body)
    slug = request.path_params["destination"]
    if slug not in source.destinations:
        raise BadRequest(f"source '{source.name}' does not send to '{slug}'", 404)
    if not isinstance(body, dict):
        raise BadRequest("the body must be one message, a JSON object")
    problem = message_problem(body)
    if problem is not None:
        raise BadRequest(problem)
    message = enrich(body, source.name, datetime.now(timezone.utc))
    records = preview(state.intake.bound(source, slug), message)
    return JSONResponse({"outcomes": redact(records, state.config.secrets())})


def _limit(request: HTTPRequest) -> int:
    try:
        return max(1, min(1000, int(request.query_params.get("limit", "100"))))
    except ValueError:
        raise BadRequest("limit must be a number") from None


def _visible(state: _State, source: SourceConfig) -> list[str]:
    """The stored jobs a source may see: its own, and those of inbound mappings that send
    back into it (their settings hold its write key): nobody else's."""
    return [source.name, *(slug for slug, inbound in state.config.inbound.items()
                           if source.write_key in inbound.settings.values())]


async def recorded(request: HTTPRequest) -> Response:
    state = _state(request)
    source = _source(state, request, None)
    rows = await asyncio.to_thread(state.outbox.rows, "recorded", _limit(request), (),
                                   _visible(state, source))
    mine = [{**recorded_view(row), "source": row["source"]} for row in rows]
    return JSONResponse({"dry_run": state.config.dry_run, "recorded": mine})


async def dead_letters(request: HTTPRequest) -> Response:
    """The source's dead letters, newest first: each request as /v1/recorded shows it, with
    its attempts and the last answer (secrets redacted)."""
    state = _state(request)
    source = _source(state, request, None)
    rows = await asyncio.to_thread(state.outbox.rows, "dead", _limit(request), (),
                                   _visible(state, source))
    letters = [{**recorded_view(row), "source": row["source"], "attempts": row["attempts"],
                "last_status": row["last_status"], "last_error": row["last_error"],
                "last_body": row["last_body"]} for row in rows]
    return JSONResponse({"dead_letters": redact(letters, state.config.secrets())})


async def tester_page(request: HTTPRequest) -> Response:
    """The tester's page and its files: static, nothing of the configuration in them; every
    answer they show comes from the API below, behind the write key."""
    entry = TESTER_FILES.get(request.path_params.get("file", ""))
    if entry is None:
        raise BadRequest(f"no such endpoint: GET {request.url.path}", 404)
    name, media_type = entry
    return Response(tester_file_bytes(name), media_type=media_type, headers=TESTER_HEADERS)


async def tester_destinations(request: HTTPRequest) -> Response:
    state = _state(request)
    source = _source(state, request, None)
    return JSONResponse(destinations_view(state.config, source), headers={"Cache-Control": "no-store"})


async def tester_preview(request: HTTPRequest) -> Response:
    """The outcomes of the event in the body (the editor's text, as typed), or where it is
    not valid JSON; the write key comes from Basic auth (the body is what is tested)."""
    state = _state(request)
    source = _source(state, request, None)
    slug = request.path_params["destination"]
    if slug not in source.destinations:
        raise BadRequest(f"source '{source.name}' does not send to '{slug}'", 404)
    raw = await read_body(request, MAX_MESSAGE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the event must be UTF-8 text") from None
    result = preview_text(state.config, source, state.intake.bound(source, slug), text)
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


async def health(request: HTTPRequest) -> Response:
    """Liveness and the outbox's counts; 503 with the reason while the outbox cannot be read,
    or since a commit failed (a full disk lets it be read) until one succeeds."""
    state = _state(request)
    problem = state.store_problem
    counts: dict[str, int] | None = None
    try:
        counts = await asyncio.to_thread(state.outbox.counts)
    except StoreUnavailable as exc:
        problem = str(exc)
    body: dict[str, Any] = {"status": "ok" if problem is None else "store unavailable",
                            "dry_run": state.config.dry_run,
                            "delivering": state.deliverer is not None
                            or (state.delivery is not None and state.delivery.running),
                            "outbox": counts}
    if problem is not None:
        body["problem"] = problem
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})
    return JSONResponse(body)


BODY_BUDGET = 64 * 1024 * 1024
"""Bytes of webhook bodies held at once across requests (at least the largest source's
webhook_max_body): four concurrent bodies of 119 MB took the shim to 974 MB before."""

MIN_FREE_DISK = 64 * 1024 * 1024
"""Bytes free on the outbox's disk below which the shim says it is not ready."""


async def ready(request: HTTPRequest) -> Response:
    """Readiness: 503, saying why, while draining, when the store cannot be read, or when
    its disk is (nearly) full; a load balancer then sends events elsewhere."""
    state = _state(request)
    problems = []
    if state.draining:
        problems.append("draining: shutting down")
    try:
        await asyncio.to_thread(state.outbox.ping)
    except Exception as exc:  # whatever the store says, it is not ready
        problems.append(f"store unavailable: {exc}" if isinstance(exc, StoreUnavailable)
                        else f"store unavailable: {type(exc).__name__}: {exc}")
    else:
        if state.store_problem is not None:
            problems.append(f"store unavailable: {state.store_problem}")
    store = state.config.store
    try:  # a SQLite file's disk (a PostgreSQL server watches its own)
        free = shutil.disk_usage(store.parent).free if isinstance(store, Path) else MIN_FREE_DISK
    except OSError as exc:
        problems.append(f"store's disk unreadable: {exc}")
    else:
        if free < MIN_FREE_DISK:
            problems.append(f"disk full: {free // (1024 * 1024)} MB free under the store")
    if problems:
        return JSONResponse({"ready": False, "problems": problems}, status_code=503)
    return JSONResponse({"ready": True})


async def openapi_endpoint(request: HTTPRequest) -> Response:
    return JSONResponse(request.app.state.openapi)


async def metrics_endpoint(request: HTTPRequest) -> Response:
    text = await asyncio.to_thread(_state(request).metrics.render)
    return PlainTextResponse(text, media_type=CONTENT_TYPE_LATEST)


# ---- errors: every one a JSON body -------------------------------------------------------

async def _bad_request(request: HTTPRequest, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    response = _error(exc.message, exc.status, exc.code)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if exc.status in (408, 413):  # the rest of the body is not read: the connection ends
        response.headers["Connection"] = "close"
    return response


async def _client_gone(request: HTTPRequest, exc: Exception) -> Response:
    # The client hung up before its body was read: nothing was taken in, and nobody reads
    # this answer. One line, not a traceback.
    client = request.client.host if request.client else "a client"
    log.info("%s went away before sending all of %s %s; nothing of it was taken in", client,
             request.method, request.url.path)
    return _error("the client went away before sending the whole body", 400, "client_gone")


RETRY_AFTER = 10
"""Seconds a client is asked to wait (Retry-After) when the outbox cannot take its events."""


async def _store_unavailable(request: HTTPRequest, exc: Exception) -> Response:
    # Nothing of the request was stored (the transaction rolled back): the client keeps
    # its events and sends them again. The reason, not the path, is the client's to read.
    assert isinstance(exc, StoreUnavailable)
    reason = exc.reason
    if isinstance(exc, StoreError):  # a database's message names its host: the log keeps it
        log.error("%s", exc)
        reason = "the database cannot be used"
    response = _error(f"the event store is unavailable ({reason}); nothing of this request "
                      f"was stored: retry later", 503, "store_unavailable")
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


async def _engine_error(request: HTTPRequest, exc: Exception) -> Response:
    # The intake turns rejected events into outcomes, so little gets here; what does is
    # still an error the engine raised on purpose, for the client to read.
    return _error(redact(str(exc), _state(request).config.secrets()), 400, "invalid_request")


async def _http_error(request: HTTPRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(f"no such endpoint: {request.method} {request.url.path}", 404, "not_found")
    if exc.status_code == 405:
        return _error(f"{request.method} is not allowed on {request.url.path}", 405,
                      "method_not_allowed")
    return _error(str(exc.detail), exc.status_code, "http_error")


async def _unexpected(request: HTTPRequest, exc: Exception) -> Response:
    # Starlette logs the traceback; the client gets no detail of it.
    return _error("internal error; the request was not accepted", 500, "internal_error")


ExceptionHandler = Callable[[HTTPRequest, Exception], Awaitable[Response]]
_HANDLERS: Mapping[Any, ExceptionHandler] = {
    BadRequest: _bad_request,
    ClientDisconnect: _client_gone,
    StoreUnavailable: _store_unavailable,  # and StoreError, a database's
    EngineError: _engine_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}


class DeliveryHandle(Protocol):
    """A delivery process beside the app (`engine serve` runs one): woken after each commit."""

    def wake(self) -> None: ...
    @property
    def running(self) -> bool: ...


def create_app(config: Config, *, deliver: bool = True, metrics: Metrics | None = None,
               delivery: DeliveryHandle | None = None) -> Starlette:
    """The ASGI app for `config`. With `deliver` (and not dry-run), delivery runs inside it,
    on its event loop (the library's and the tests' way). `engine serve` passes
    `deliver=False` and a `delivery` process instead, woken after each commit of new jobs,
    whose figures it adds to `metrics`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics_ = metrics or Metrics()
        outbox = open_outbox(config.store)
        metrics_.gauges["outbox_jobs"] = lambda: job_counts(outbox)
        intake = Intake(config, outbox, metrics_)
        budget = BodyBudget(max([BODY_BUDGET, *(s.webhook_max_body for s in config.sources)]))
        state = _State(config, outbox, intake, metrics_, GroupCommit(intake), budget, delivery=delivery)
        task = stop = None
        if deliver and not config.dry_run:
            state.deliverer = Deliverer(config, outbox, metrics=metrics_)
            outbox.claim_delivery()  # fails now, clearly, if another process delivers it
            stop = asyncio.Event()
            task = asyncio.create_task(state.deliverer.run(stop, drain_timeout=10))
        app.state.shim = state
        try:
            yield
        finally:
            state.draining = True
            if task is not None and stop is not None:
                stop.set()  # requests in flight finish; the rest stays stored for next time
                await task
            outbox.close()

    routes = [
        Route("/v1/preview/{destination}", preview_endpoint, methods=["POST"]),
        Route("/v1/recorded", recorded, methods=["GET"]),
        Route("/v1/dead-letters", dead_letters, methods=["GET"]),
        Route("/v1/{call:str}", tracking, methods=["POST"]),
        Route("/webhook/{source}", webhook, methods=["POST", "PUT", "PATCH"]),
        Route("/inbound/{mapping}", inbound, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    if config.tester:  # off unless the configuration asks: a page for development
        routes += [
            Route("/tester", tester_page, methods=["GET"]),
            Route("/tester/{file}", tester_page, methods=["GET"]),
            Route("/tester/api/destinations", tester_destinations, methods=["GET"]),
            Route("/tester/api/preview/{destination}", tester_preview, methods=["POST"]),
        ]
    # Browsers (analytics.js) send an Authorization header, so each POST is preceded by a
    # preflight; retries add X-Retry-Count. Any header is allowed: the write key decides.
    cors = Middleware(_TrackingCORS, allow_origins=list(config.cors_origins))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[cors],
                    exception_handlers=dict(_HANDLERS))
    app.state.openapi = openapi_document(tester=config.tester)
    return app


class _TrackingCORS:
    """CORS for the tracking API alone (what browsers send events to): the other routes
    (preview, recorded, metrics, ...) answer no page of another origin."""

    def __init__(self, app: ASGIApp, allow_origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=allow_origins, allow_methods=["POST"],
                                   allow_headers=["*"], max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/v1/") and not path.startswith(("/v1/preview/", "/v1/recorded",
                                                             "/v1/dead-letters")):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
