"""The HTTP shim: Segment's tracking API in front of the engine (Starlette, served by uvicorn).

    POST /v1/identify|track|page|screen|group|alias    one message
    POST /v1/batch, /v1/import                          {"batch": [...], "context", "integrations"}
    POST /v1/preview/{destination}                      the outcomes of one message (redacted)
    GET  /v1/recorded                                   dry-run: what would have been sent
    POST|PUT|PATCH /webhook/{source}                    a Segment Webhooks destination's calls
    POST /inbound/{mapping}                             input for an inbound mapping
    GET  /health, /metrics

`{"success": true}` is answered only after every request an event maps to is committed to
the outbox. Delivery runs in the same process unless `--no-deliver` (or dry_run).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .config import INBOUND_SOURCE, Config, SourceConfig
from .delivery import Deliverer
from .errors import EventError
from .intake import Intake
from .metrics import Metrics
from .outcomes import Request
from .preview import preview
from .redact import redact
from .store import Outbox, SecretInRequest
from .tracking import (MAX_BATCH, MAX_MESSAGE, BadRequest, decode_body, enrich, message_size,
                       messages_of, write_key_from)

__all__ = ["create_app", "command_serve", "command_recorded"]

log = logging.getLogger("engine.server")

CALLS = ("identify", "track", "page", "screen", "group", "alias")
MAX_BATCH_MESSAGES = 2500
# Segment's Actions Webhooks batch up to 4,000 events: 32 KB each at the most.
MAX_WEBHOOK_MESSAGES = 4000
MAX_WEBHOOK = MAX_WEBHOOK_MESSAGES * MAX_MESSAGE


@dataclass
class _State:
    config: Config
    outbox: Outbox
    intake: Intake
    metrics: Metrics
    deliverer: Deliverer | None = None


def _error(message: str, status: int = 400, code: str = "invalid_request") -> JSONResponse:
    return JSONResponse({"success": False, "code": code, "message": message}, status_code=status)


async def _read_raw(request: HTTPRequest, limit: int = MAX_BATCH) -> bytes:
    """The body as sent, read no further than `limit` bytes on the wire."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the body is larger than {limit // 1024} KB")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read(request: HTTPRequest, limit: int = MAX_BATCH) -> Any:
    """The decoded JSON body (gunzipped if need be), never more than `limit` bytes."""
    return decode_body(await _read_raw(request, limit), request.headers.get("content-encoding"), limit)


def _state(request: HTTPRequest) -> _State:
    return request.app.state.shim


def _source(state: _State, request: HTTPRequest, body: Any) -> SourceConfig:
    key = write_key_from(request.headers.get("authorization"), body)
    if key is None:
        raise BadRequest("no write key: send it as Basic auth (the username) or as writeKey", 401)
    source = state.config.source_for_key(key)
    if source is None:
        raise BadRequest("unknown write key", 401)
    return source


def _verify_signature(secret: str | None, raw: bytes, signature: str | None) -> None:
    """X-Signature is the hex HMAC-SHA1 of the body with the shared secret; for a batch from
    Segment's Actions Webhooks it covers the batch's first event, as sent."""
    if not secret:
        return
    given = (signature or "").strip().lower()
    for signed in (raw, _first_element(raw)):
        if signed is not None and given and hmac.compare_digest(
                hmac.new(secret.encode(), signed, hashlib.sha1).hexdigest(), given):
            return
    raise BadRequest("missing or wrong X-Signature (hex HMAC-SHA1 of the body)", 401)


def _first_element(raw: bytes) -> bytes | None:
    """The exact bytes of the first element of a JSON array body, or None."""
    text = raw.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip())
    if not text[start:start + 1] == "[":
        return None
    rest = text[start + 1:]
    offset = len(rest) - len(rest.lstrip())
    try:
        _, end = json.JSONDecoder().raw_decode(rest, offset)
    except ValueError:
        return None
    return rest[offset:end].encode("utf-8")


async def _accept(state: _State, source: SourceConfig, messages: list[Any],
                  sent_at: Any = None) -> tuple[list[dict[str, Any]], int]:
    """Check, map and durably store `messages`; return the rejections and how many were kept."""
    received_at = datetime.now(timezone.utc)
    rejected: list[dict[str, Any]] = []
    kept: list[tuple[int, dict[str, Any]]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            rejected.append({"index": index, "message": "a message must be a JSON object"})
        elif message_size(message) > MAX_MESSAGE:
            rejected.append({"index": index, "message": f"the message is larger than {MAX_MESSAGE // 1024} KB"})
        else:
            kept.append((index, enrich(message, source.name, received_at, sent_at)))

    def map_and_store() -> list[dict[str, Any]]:
        errors, requests = [], []
        for index, message in kept:
            result = state.intake.map(source, message)
            if result.error:
                errors.append({"index": index, "message": result.error})
            requests += result.requests
        state.intake.store(source.name, requests)  # durable before we answer
        return errors

    rejected += await asyncio.to_thread(map_and_store)
    if state.deliverer is not None:
        state.deliverer.wakeup.set()
    rejected.sort(key=lambda r: r["index"])
    return rejected, len(messages) - len(rejected)


def _batch_reply(rejected: list[dict[str, Any]], kept: int, total: int) -> JSONResponse:
    if total and not kept:
        if total == 1:
            return _error(rejected[0]["message"], code="invalid_message")
        return JSONResponse({"success": False, "code": "invalid_messages",
                             "message": "no message in the batch is valid", "rejected": rejected},
                            status_code=400)
    body: dict[str, Any] = {"success": True}
    if rejected:
        body["rejected"] = rejected
    return JSONResponse(body)


def _guard(handler: Any) -> Any:
    async def endpoint(request: HTTPRequest) -> Response:
        try:
            return await handler(request)
        except BadRequest as exc:
            return _error(exc.message, exc.status, "unauthorized" if exc.status == 401 else "invalid_request")
        except SecretInRequest as exc:
            log.error("refused to store a request: %s", exc)
            return _error("a mapping would store a secret; the event was not accepted", 500, "mapping_error")
    return endpoint


async def tracking(request: HTTPRequest) -> Response:
    state = _state(request)
    call = request.path_params["call"]
    if call not in CALLS and call not in ("batch", "import"):
        return _error(f"no such endpoint: POST /v1/{call}", 404, "not_found")
    body = await _read(request, MAX_MESSAGE if call in CALLS else MAX_BATCH)
    source = _source(state, request, body)
    if call in CALLS:
        messages = messages_of(body, call)
        sent_at = None
    else:
        messages = messages_of(body, None)
        sent_at = body.get("sentAt")
        if len(messages) > MAX_BATCH_MESSAGES:
            raise BadRequest(f"a batch holds at most {MAX_BATCH_MESSAGES} messages")
    rejected, kept = await _accept(state, source, messages, sent_at)
    return _batch_reply(rejected, kept, len(messages))


async def webhook(request: HTTPRequest) -> Response:
    state = _state(request)
    source = state.config.source(request.path_params["source"])
    if source is None:
        return _error("unknown source", 404, "not_found")
    raw = await _read_raw(request, MAX_WEBHOOK)
    _verify_signature(source.webhook_secret, raw, request.headers.get("x-signature"))
    body = decode_body(raw, request.headers.get("content-encoding"), MAX_WEBHOOK)
    messages = body if isinstance(body, list) else [body]
    if len(messages) > MAX_WEBHOOK_MESSAGES:
        raise BadRequest(f"a webhook batch holds at most {MAX_WEBHOOK_MESSAGES} events")
    rejected, kept = await _accept(state, source, messages)
    return _batch_reply(rejected, kept, len(messages))


async def inbound(request: HTTPRequest) -> Response:
    state = _state(request)
    slug = request.path_params["mapping"]
    entry = state.config.inbound.get(slug)
    if entry is None:
        return _error(f"no inbound mapping '{slug}' is configured", 404, "not_found")
    raw = await _read_raw(request)
    _verify_signature(entry.secret, raw, request.headers.get("x-signature"))
    body = decode_body(raw, request.headers.get("content-encoding"))
    items = body if isinstance(body, list) else [body]
    bound = state.config.destinations[slug].bind(entry.settings)

    def map_and_store() -> list[dict[str, Any]]:
        results, requests = [], []
        for index, item in enumerate(items):
            try:
                outcomes = bound.map(item)
            except EventError as exc:
                results.append({"index": index, "error": redact(str(exc), bound.secrets)})
                continue
            for outcome in outcomes:
                if isinstance(outcome, Request):
                    requests.append(outcome)
                    results.append({"index": index, "stored": outcome.rule})
                else:
                    results.append({"index": index, "skipped": outcome.reason})
        state.intake.store(INBOUND_SOURCE, requests)
        return results

    results = await asyncio.to_thread(map_and_store)
    if state.deliverer is not None:
        state.deliverer.wakeup.set()
    if len(items) == 1 and "error" in results[0]:
        return _error(results[0]["error"], code="invalid_message")
    return JSONResponse({"success": True, "results": results})


async def preview_endpoint(request: HTTPRequest) -> Response:
    state = _state(request)
    body = await _read(request, MAX_MESSAGE)
    source = _source(state, request, body)
    slug = request.path_params["destination"]
    settings = source.destinations.get(slug)
    if settings is None:
        return _error(f"source '{source.name}' does not send to '{slug}'", 404, "not_found")
    if not isinstance(body, dict):
        raise BadRequest("the body must be one message, a JSON object")
    message = enrich(body, source.name, datetime.now(timezone.utc))
    bound = state.config.destinations[slug].bind(settings)
    records = preview(bound, message)
    return JSONResponse({"outcomes": redact(records, state.config.secrets())})


async def recorded(request: HTTPRequest) -> Response:
    state = _state(request)
    source = _source(state, request, None)
    try:
        limit = max(1, min(1000, int(request.query_params.get("limit", "100"))))
    except ValueError:
        raise BadRequest("limit must be a number") from None
    rows = await asyncio.to_thread(state.outbox.rows, "recorded", limit * 4)
    mine = [_recorded_row(row) for row in rows if row["source"] == source.name][:limit]
    return JSONResponse({"dry_run": state.config.dry_run, "recorded": mine})


def _recorded_row(row: dict[str, Any]) -> dict[str, Any]:
    request = dict(row["request"])
    body = request.pop("body")
    if body is not None:
        request["form" if request.pop("encoding") == "form" else "json"] = body
    else:
        request.pop("encoding")
    return {"id": row["id"], "destination": row["destination"], "rule": row["rule"],
            "message_id": row["message_id"], "request": request}


async def health(request: HTTPRequest) -> Response:
    state = _state(request)
    counts = await asyncio.to_thread(state.outbox.counts)
    return JSONResponse({"status": "ok", "dry_run": state.config.dry_run,
                         "delivering": state.deliverer is not None, "outbox": counts})


async def metrics(request: HTTPRequest) -> Response:
    text = await asyncio.to_thread(_state(request).metrics.render)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def create_app(config: Config, *, deliver: bool = True, transport: Any = None) -> Starlette:
    """The ASGI app for `config`. Delivery runs inside it when `deliver` and not dry-run;
    `transport` replaces the network for delivery in tests."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics_ = Metrics()
        outbox = Outbox(config.store)
        metrics_.gauges["outbox_jobs"] = lambda: {k: float(v) for k, v in outbox.counts().items()}
        state = _State(config, outbox, Intake(config, outbox, metrics_), metrics_)
        task = stop = None
        if deliver and not config.dry_run:
            state.deliverer = Deliverer(config, outbox, metrics=metrics_, transport=transport)
            outbox.claim_delivery()  # fails now, clearly, if another process delivers it
            stop = asyncio.Event()
            task = asyncio.create_task(state.deliverer.run(stop, drain_timeout=10))
        app.state.shim = state
        try:
            yield
        finally:
            if task is not None and stop is not None:
                stop.set()  # requests in flight finish; the rest stays stored for next time
                await task
            outbox.close()

    routes = [
        Route("/v1/preview/{destination}", _guard(preview_endpoint), methods=["POST"]),
        Route("/v1/recorded", _guard(recorded), methods=["GET"]),
        Route("/v1/{call:str}", _guard(tracking), methods=["POST"]),
        Route("/webhook/{source}", _guard(webhook), methods=["POST", "PUT", "PATCH"]),
        Route("/inbound/{mapping}", _guard(inbound), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    async def not_found(request: HTTPRequest, exc: Exception) -> Response:
        return _error(f"no such endpoint: {request.method} {request.url.path}", 404, "not_found")

    async def wrong_method(request: HTTPRequest, exc: Exception) -> Response:
        return _error(f"{request.method} is not allowed on {request.url.path}", 405, "method_not_allowed")

    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={404: not_found, 405: wrong_method})


def command_serve(args: Any) -> int:
    """`python -m engine serve`."""
    import uvicorn

    from .cli import UsageError, open_config
    from .store import DeliveryLocked

    config = open_config(args.config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    mode = "dry run: requests are recorded, not sent" if config.dry_run else (
        "delivering in this process" if not args.no_deliver else "not delivering (--no-deliver)")
    log.info("%d destinations, %d sources, outbox %s; %s", len(config.destinations),
             len(config.sources), config.store, mode)
    for source in config.sources:
        if not source.webhook_secret:
            log.warning("POST /webhook/%s is not signed: set webhook_secret to require X-Signature",
                        source.name)
    if not args.no_deliver and not config.dry_run:
        # Say it now, plainly, rather than as a failed application startup.
        probe = Outbox(config.store)
        try:
            probe.claim_delivery()
        except DeliveryLocked as exc:
            raise UsageError(f"{exc}; stop it, or serve with --no-deliver") from None
        finally:
            probe.close()
    app = create_app(config, deliver=not args.no_deliver)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=15)
    return 0


def command_recorded(args: Any) -> int:
    """`python -m engine recorded`."""
    import sys

    import orjson

    from .cli import open_config

    config = open_config(args.config)
    outbox = Outbox(config.store)
    try:
        for row in outbox.rows("recorded", limit=max(1, args.limit)):
            if args.source is None or row["source"] == args.source:
                sys.stdout.buffer.write(orjson.dumps({"source": row["source"], **_recorded_row(row)}) + b"\n")
    finally:
        outbox.close()
    return 0
