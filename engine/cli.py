"""The command line: `python -m engine validate|map|...` (docs in README.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

import orjson
import yaml

from .config import Config, ConfigError, load_config
from .destination import Destination
from .intake import Intake
from .store import DeliveryLocked, Outbox, SecretInRequest
from .errors import MappingError, SettingsError
from .jsonstream import BadJSON, iter_json
from .loader import check, load
from .preview import preview
from .sandbox import parse_datetime

__all__ = ["main"]


class UsageError(Exception):
    """Bad arguments, mappings or settings: exit 2 with the message."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` is a normal way to stop reading
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine",
                                     description="Route Segment-spec events to destinations.")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check mapping files; print file:line:col problems")
    validate.add_argument("paths", nargs="*", default=["mappings"], metavar="PATH")
    validate.add_argument("--config", metavar="FILE",
                          help="check this configuration file (and the mappings it names) too")
    validate.set_defaults(handler=_validate)

    map_ = sub.add_parser("map", help="map events (NDJSON or a JSON array) to requests")
    map_.add_argument("--destination", required=True, metavar="SLUG")
    map_.add_argument("--mappings", default="mappings", metavar="DIR")
    map_.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE")
    map_.add_argument("--settings", metavar="FILE", help="YAML or JSON file of settings")
    map_.add_argument("--now", metavar="ISO8601", help="the clock, for repeatable output")
    map_.add_argument("--show-secrets", action="store_true", help="do not redact secret settings")
    map_.add_argument("files", nargs="*", metavar="FILE", help="event files (default: stdin)")
    map_.set_defaults(handler=_map)

    enqueue = sub.add_parser("enqueue", help="map events for a source and store them in the outbox")
    enqueue.add_argument("--config", required=True, metavar="FILE")
    enqueue.add_argument("--source", required=True, metavar="NAME")
    enqueue.add_argument("files", nargs="*", metavar="FILE", help="event files (default: stdin)")
    enqueue.set_defaults(handler=_enqueue)

    deliver = sub.add_parser("deliver", help="deliver the outbox (until SIGTERM, or --until-idle)")
    deliver.add_argument("--config", required=True, metavar="FILE")
    deliver.add_argument("--until-idle", action="store_true",
                         help="stop when nothing is due now (deferred requests stay stored)")
    deliver.set_defaults(handler=_deliver)

    dead = sub.add_parser("dead-letters", help="list, show, replay or purge dead letters")
    dead.add_argument("action", choices=["list", "show", "replay", "purge"])
    dead.add_argument("ids", nargs="*", type=int, metavar="ID")
    dead.add_argument("--config", required=True, metavar="FILE")
    dead.add_argument("--all", action="store_true", help="replay or purge every dead letter")
    dead.set_defaults(handler=_dead_letters)

    serve = sub.add_parser("serve", help="run the HTTP shim (Segment's tracking API)")
    serve.add_argument("--config", required=True, metavar="FILE")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--no-deliver", action="store_true",
                       help="accept and store only; run `deliver` in another process")
    serve.set_defaults(handler=_lazy("serve"))

    shown = sub.add_parser("recorded", help="list the requests a dry-run shim recorded")
    shown.add_argument("--config", required=True, metavar="FILE")
    shown.add_argument("--source", metavar="NAME")
    shown.add_argument("--limit", type=int, default=100)
    shown.set_defaults(handler=_lazy("recorded"))
    return parser


def _lazy(name: str) -> Any:
    """A handler in engine.server, imported only when used (Starlette is not light)."""
    def run(args: argparse.Namespace) -> int:
        from . import server
        return getattr(server, f"command_{name}")(args)
    return run


def _validate(args: argparse.Namespace) -> int:
    destinations, problems = check(args.paths)
    if args.config:
        try:
            load_config(args.config)
        except ConfigError as exc:
            problems = sorted(set(problems) | set(exc.problems))
        except OSError as exc:
            raise UsageError(f"cannot read configuration {args.config}: {exc}") from None
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=sys.stderr)
        return 1
    print(f"ok: {len(destinations)} destination{'s' if len(destinations) != 1 else ''} valid",
          file=sys.stderr)
    return 0


def load_destination(mappings: str, slug: str) -> Destination:
    """Load `mappings` and return destination `slug`, or raise UsageError saying why not."""
    try:
        destinations = load(mappings)
    except MappingError as exc:
        raise UsageError(f"invalid mappings:\n{exc}") from None
    if slug not in destinations:
        known = ", ".join(sorted(destinations)) or "none"
        raise UsageError(f"unknown destination '{slug}' (known: {known})")
    return destinations[slug]


def read_settings(destination: Destination, file: str | None, pairs: list[str]) -> dict[str, Any]:
    """Settings from a YAML/JSON file and KEY=VALUE pairs (coerced by the schema)."""
    settings: dict[str, Any] = {}
    if file:
        try:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read settings file {file}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UsageError(f"settings file {file} must hold a mapping of setting names to values")
        settings.update(loaded or {})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--setting takes KEY=VALUE, got {pair!r}")
        try:
            settings[key] = destination.settings_schema.coerce(key, value)
        except SettingsError as exc:
            raise UsageError(str(exc)) from None
    return settings


def _map(args: argparse.Namespace) -> int:
    destination = load_destination(args.mappings, args.destination)
    settings = read_settings(destination, args.settings, args.setting)
    try:
        bound = destination.bind(settings)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    now = parse_datetime(args.now) if args.now is not None else None
    if args.now is not None and now is None:
        raise UsageError(f"--now must be an ISO 8601 time, got {args.now!r}")
    for name in args.files:
        if name != "-" and not Path(name).is_file():
            raise UsageError(f"no such events file: {name}")
    out = sys.stdout.buffer
    progress = _Progress(sys.stderr)
    for number, event in enumerate(_events(args.files), start=1):
        if isinstance(event, BadJSON):
            records = [{"error": event.message}]
        else:
            records = preview(bound, event, now=now, show_secrets=args.show_secrets)
        for record in records:
            out.write(orjson.dumps({"event": number, **record}) + b"\n")
        progress.tick(number)
    out.flush()
    progress.done()
    return 0


def _events(files: list[str]) -> Iterator[Any]:
    if not files:
        yield from iter_json(sys.stdin)
        return
    for name in files:
        if name == "-":
            yield from iter_json(sys.stdin)
            continue
        with open(name, encoding="utf-8") as stream:
            yield from iter_json(stream)


class _Progress:
    """A one-line counter on stderr, only on a terminal and only for runs that take a while."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.last = self.started
        self.shown = False

    def tick(self, count: int) -> None:
        if not self.enabled or count % 1000:
            return
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            rate = count / (now - self.started)
            self.stream.write(f"\r{count:,} events mapped ({rate:,.0f}/s)")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def open_config(path: str) -> Config:
    """Load a configuration file, or raise UsageError with every problem in it."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError(f"invalid configuration:\n{exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read configuration {path}: {exc}") from None


def _enqueue(args: argparse.Namespace) -> int:
    config = open_config(args.config)
    source = config.source(args.source)
    if source is None:
        known = ", ".join(s.name for s in config.sources) or "none"
        raise UsageError(f"unknown source '{args.source}' (known: {known})")
    outbox = Outbox(config.store)
    intake = Intake(config, outbox)
    out = sys.stdout.buffer
    stored = duplicates = 0
    try:
        for number, event in enumerate(_events(args.files), start=1):
            if isinstance(event, BadJSON):
                out.write(orjson.dumps({"event": number, "error": event.message}) + b"\n")
                continue
            (result,), saved = intake.accept(source, [event])
            stored += saved.stored
            duplicates += saved.duplicates
            line: dict[str, Any] = {"event": number}
            if result.error:
                line["error"] = result.error
            else:
                line["stored"] = [r.destination for r in result.requests]
                if saved.duplicates:
                    line["duplicates"] = saved.duplicates
                line["skipped"] = {s.destination: s.reason for s in result.skipped}
            out.write(orjson.dumps(line) + b"\n")
    except SecretInRequest as exc:
        raise UsageError(str(exc)) from None
    finally:
        out.flush()
        outbox.close()
    print(f"{stored} request{'s' if stored != 1 else ''} stored in {config.store}"
          + (f", {duplicates} duplicate{'s' if duplicates != 1 else ''}" if duplicates else ""),
          file=sys.stderr)
    return 0


def _deliver(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .delivery import Deliverer, run_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    config = open_config(args.config)
    if config.dry_run:
        raise UsageError("the configuration has dry_run: true; nothing is sent in dry-run mode")
    outbox = Outbox(config.store)
    deliverer = Deliverer(config, outbox)
    try:
        if args.until_idle:
            asyncio.run(deliverer.drain(max_seconds=float("inf")))
        else:
            run_forever(deliverer)
    except DeliveryLocked as exc:
        raise UsageError(str(exc)) from None
    finally:
        counts = outbox.counts()
        outbox.close()
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "outbox empty",
          file=sys.stderr)
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    config = open_config(args.config)
    outbox = Outbox(config.store)
    try:
        if args.action in ("list", "show"):
            rows = outbox.rows("dead", limit=1000, ids=args.ids)
            if args.action == "show" and not args.ids:
                raise UsageError("show takes the ids of the dead letters to show")
            for row in rows:
                if args.action == "list":
                    row = {k: row[k] for k in ("id", "source", "destination", "rule", "message_id",
                                               "attempts", "last_status", "last_error")}
                sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
            if args.action == "show" and len(rows) < len(set(args.ids)):
                missing = sorted(set(args.ids) - {r["id"] for r in rows})
                raise UsageError(f"no dead letter with id {', '.join(map(str, missing))}")
            return 0
        if not args.ids and not args.all:
            raise UsageError(f"{args.action} takes dead-letter ids, or --all")
        if args.action == "replay":
            count = outbox.replay(args.ids, all_dead=args.all)
            print(f"{count} dead letter{'s' if count != 1 else ''} queued again", file=sys.stderr)
        else:
            count = outbox.purge(args.ids, all_dead=args.all)
            print(f"{count} dead letter{'s' if count != 1 else ''} purged", file=sys.stderr)
        return 0
    finally:
        outbox.close()
