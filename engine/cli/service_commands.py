"""`serve` and `deliver`: the long-running processes (the HTTP shim, the delivery worker)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import start_http_server
from starlette.applications import Starlette

from ..delivery import open_outbox
from ..delivery.outbox import job_counts
from ..delivery.worker import Deliverer, run_forever
from ..errors import DeliveryLocked, UsageError
from ..http.app import create_app
from ..http.server import server_config
from ..metrics import Metrics
from . import logs
from .common import open_config
from .delivery_process import DeliveryProcess

__all__ = ["serve", "deliver"]

log = logging.getLogger("engine.serve")


def serve(args: argparse.Namespace) -> int:
    """`engine serve`: the HTTP shim (intake), and a delivery process beside it (on the other
    core) unless --no-deliver or dry-run."""
    config = open_config(args.config)
    logs.configure(args.log_level, args.log_format)
    delivering = not args.no_deliver and not config.dry_run
    mode = "dry run: requests are recorded, not sent" if config.dry_run else (
        "delivering in a process of its own" if delivering else "not delivering (--no-deliver)")
    log.info("%d destinations, %d sources, outbox %s; %s", len(config.destinations),
             len(config.sources), config.store, mode)
    for source in config.sources:
        if not source.webhook_secret:
            log.warning("POST /webhook/%s is not signed: set webhook_secret to require X-Signature",
                        source.name)
    for inbound in config.inbound.values():
        if not inbound.secret:
            log.warning("POST /inbound/%s is not signed: set its secret to require X-Signature",
                        inbound.slug)
    uvicorn_logs = logs.uvicorn_config(args.log_level, args.log_format)
    # Say it now, plainly, rather than as a traceback of the app's start or a failed start
    # of the delivery process: an outbox that cannot be used (StoreUnavailable, or a
    # database out of reach, StoreError: one line), or a SQLite outbox delivered elsewhere.
    # (Opening a PostgreSQL outbox also brings its schema up to date.)
    probe = open_outbox(config.store)
    try:
        probe.ping()
        if delivering:
            probe.claim_delivery()
    except DeliveryLocked as exc:
        raise UsageError(f"{exc}; stop it, or serve with --no-deliver") from None
    finally:
        probe.close()
    if not delivering:
        _run(create_app(config, deliver=False), args, uvicorn_logs)
        return 0
    metrics = Metrics()
    delivery = DeliveryProcess(config.path, metrics, log_args=(
        "--log-level", args.log_level, "--log-format", args.log_format))
    # uvicorn stops on SIGTERM or SIGINT, then raises the signal again for the handler it
    # found: with this one, the process lives on to stop its delivery process cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: None)
    delivery.start()
    try:
        _run(create_app(config, deliver=False, metrics=metrics, delivery=delivery), args,
             uvicorn_logs)
    finally:
        # After the intake: what it accepted is stored; the delivery process finishes what it
        # has in flight, unless a second signal says not to wait.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, frame: delivery.kill())
        delivery.stop()
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when a signal starts its shutdown, so that /ready
    says 503 to the requests still served while it drains."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        shim = getattr(self.app.state, "shim", None)  # set once the app has started
        if shim is not None:
            shim.draining = True
        super().handle_exit(sig, frame)


def _run(app: Starlette, args: argparse.Namespace, log_config: dict[str, Any]) -> None:
    # X-Forwarded-For is the engine's to judge (trusted_proxies), not uvicorn's: it would
    # believe it from 127.0.0.1 and rewrite the client's address before the app sees it.
    config = server_config(app, host=args.host, port=args.port, log_config=log_config,
                           timeout_graceful_shutdown=15, proxy_headers=False)
    _Server(config, app).run()


def deliver(args: argparse.Namespace) -> int:
    """`engine deliver`: send the outbox until SIGTERM (or, `--until-idle`, until nothing
    is due), then say what is in it."""
    logs.configure(args.log_level, args.log_format)
    config = open_config(args.config)
    if config.dry_run:
        raise UsageError("the configuration has dry_run: true; nothing is sent in dry-run mode")
    outbox = open_outbox(config.store)
    deliverer = Deliverer(config, outbox)
    if args.metrics_port is not None:
        deliverer.metrics.gauges["outbox_jobs"] = lambda: job_counts(outbox)
        try:
            start_http_server(args.metrics_port, args.metrics_host, registry=deliverer.metrics.registry)
        except (OSError, OverflowError, ValueError) as exc:
            raise UsageError(f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        log.info("metrics at http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    try:
        if args.until_idle:
            asyncio.run(deliverer.drain(max_seconds=float("inf")))
        else:
            run_forever(deliverer, wake_fd=args.wake_fd, report_fd=args.report_fd)
        counts = outbox.counts()
    except DeliveryLocked as exc:
        raise UsageError(str(exc)) from None
    finally:
        outbox.close()
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "outbox empty",
          file=sys.stderr)
    return 0
