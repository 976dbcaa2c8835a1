"""The command line: `python -m engine COMMAND` (validate, test, init, describe, explain, map,
enqueue, deliver, dead-letters, serve, recorded); README.md documents each one and its output.

Each command lives in a module of its own kind, imported when the command runs, so that a
light command (`dead-letters`, `validate`) never loads the web framework or the HTTP client.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata
from typing import Callable, Sequence

from ..errors import StoreError, StoreUnavailable, UsageError
from .logs import FORMATS, LEVELS

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 done, 1 problems found or the outbox
    cannot be used, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name, allowed in (("log_level", LEVELS), ("log_format", FORMATS)):
        value = getattr(args, name, None)  # from the environment, argparse does not check it
        if value is not None and value not in allowed:
            parser.error(f"ENGINE_{name.upper()} must be one of {', '.join(allowed)}, got {value!r}")
    try:
        handler: Handler = args.handler
        return handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # the outbox's database is out of reach: may pass, so not 2
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:  # a full disk, a lock held elsewhere, a corrupt file
        print(f"error: the outbox cannot be used: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `... | head` is a normal way to stop reading
        return 0


_EXAMPLES = """\
examples:
  engine validate                                    check every file in mappings/
  engine test mappings/skalin.yaml                   run its examples against their snapshots
  engine init acme-crm                               a starter mapping file to edit
  engine describe calixa                             its call types, settings and rules
  echo '{"type":"identify","userId":"u1","traits":{"email":"a@example.com"}}' \\
    | engine map --destination calixa --setting api_key=KEY --setting endpoint=https://...
  engine serve --config deploy.yaml --port 8080      the shim, and a delivery process beside it
  engine dead-letters list --config deploy.yaml

Every serve option can come from the environment: ENGINE_CONFIG (for every command that
takes --config), ENGINE_HOST, ENGINE_PORT, ENGINE_NO_DELIVER=1.
"""


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _version() -> str:
    try:
        return metadata.version("engine")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engine", description="Route Segment-spec events to the tools that consume them: "
                                   "one YAML file per destination.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"engine {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_env = _env("ENGINE_CONFIG")

    def config_option(command: argparse.ArgumentParser, required: bool = True) -> None:
        command.add_argument("--config", required=required and config_env is None,
                             default=config_env, metavar="FILE",
                             help="the deployment's configuration file (env: ENGINE_CONFIG)")

    def log_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--log-level", choices=LEVELS, default=_env("ENGINE_LOG_LEVEL") or "info",
                             help="the least severe lines logged; info shows each rejected event, "
                                  "debug each skipped one too (env: ENGINE_LOG_LEVEL)")
        command.add_argument("--log-format", choices=FORMATS,
                             default=_env("ENGINE_LOG_FORMAT") or "text",
                             help="text, or json: one object a line, uvicorn's access log too "
                                  "(env: ENGINE_LOG_FORMAT)")

    validate = sub.add_parser("validate", help="check mapping files; print file:line:col problems")
    validate.add_argument("paths", nargs="*", metavar="PATH",
                          help="mapping files or directories (default: ./mappings, or the "
                               "mappings shipped with the engine when there is none)")
    validate.add_argument("--config", metavar="FILE", default=config_env,
                          help="check this configuration file (and the mappings it names) too "
                               "(env: ENGINE_CONFIG)")
    validate.set_defaults(handler=_command("mapping_commands", "validate"))

    test = sub.add_parser("test", help="run mapping files' examples; compare each with its "
                                       "snapshot and its expect:")
    test.add_argument("paths", nargs="*", metavar="PATH",
                      help="mapping files or directories (default: ./mappings, or the "
                           "mappings shipped with the engine when there is none)")
    test.add_argument("--update", action="store_true",
                      help="write the snapshots that are missing or differ, and remove those of "
                           "no example (refused where CI is set); expect: is never rewritten")
    test.add_argument("--snapshots", metavar="DIR",
                      help="where the snapshots are (default: snapshots/ beside the directory "
                           "of the mapping files)")
    test.set_defaults(handler=_command("authoring_commands", "run_tests"))

    init = sub.add_parser("init", help="write a commented starter mapping file (and its "
                                       "example's snapshot) that passes validate and test")
    init.add_argument("slug", metavar="SLUG", help="the new destination's slug (like acme-crm)")
    init.add_argument("--name", help="its display name (default: from the slug, Acme Crm)")
    init.add_argument("--mappings", metavar="DIR", help="where to write it (default: ./mappings)")
    init.add_argument("--snapshots", metavar="DIR",
                      help="where its snapshot goes (default: snapshots/ beside DIR)")
    init.set_defaults(handler=_command("authoring_commands", "init"))

    describe = sub.add_parser("describe", help="a destination's call types, settings and rules")
    describe.add_argument("slug", metavar="SLUG", help="the destination's slug")
    describe.add_argument("--mappings", metavar="DIR",
                          help="where the mapping files are (default: ./mappings, or the "
                               "mappings shipped with the engine when there is none)")
    describe.add_argument("--json", action="store_true", help="as JSON")
    describe.set_defaults(handler=_command("authoring_commands", "describe_destination"))

    map_ = sub.add_parser("map", help="map events (NDJSON or a JSON array) to requests")
    map_.add_argument("--destination", required=True, metavar="SLUG",
                      help="the destination's slug (its mapping file's `slug`)")
    map_.add_argument("--mappings", metavar="DIR",
                      help="where the mapping files are (default: ./mappings, or the "
                           "mappings shipped with the engine when there is none)")
    map_.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                      help="one setting, converted to its declared type (repeatable)")
    map_.add_argument("--settings", metavar="FILE", help="YAML or JSON file of settings")
    map_.add_argument("--now", metavar="ISO8601", help="the clock, for repeatable output")
    map_.add_argument("--show-secrets", action="store_true", help="do not redact secret settings")
    map_.add_argument("files", nargs="*", metavar="FILE", help="event files (default: stdin)")
    map_.set_defaults(handler=_command("mapping_commands", "map_events"))

    explain = sub.add_parser("explain", help="print the Python function a rule is compiled into")
    explain.add_argument("destination", metavar="SLUG", help="the destination's slug")
    explain.add_argument("rule", metavar="RULE", help="the rule's name")
    explain.add_argument("--mappings", metavar="DIR",
                         help="where the mapping files are (default: ./mappings, or the "
                              "mappings shipped with the engine when there is none)")
    explain.set_defaults(handler=_command("mapping_commands", "explain"))

    enqueue = sub.add_parser("enqueue", help="map events for a source and store them in the outbox")
    config_option(enqueue)
    enqueue.add_argument("--source", required=True, metavar="NAME",
                         help="a source's name, or an inbound mapping's")
    enqueue.add_argument("files", nargs="*", metavar="FILE", help="event files (default: stdin)")
    enqueue.set_defaults(handler=_command("outbox_commands", "enqueue"))

    deliver = sub.add_parser("deliver", help="deliver the outbox (until SIGTERM, or --until-idle)")
    config_option(deliver)
    deliver.add_argument("--until-idle", action="store_true",
                         help="stop when nothing is due now (deferred requests stay stored)")
    log_options(deliver)
    deliver.add_argument("--metrics-port", type=int, default=_env("ENGINE_METRICS_PORT"),
                         metavar="PORT", help="serve this process's Prometheus metrics at "
                                              "http://HOST:PORT/metrics, for a deliver run apart "
                                              "from serve (env: ENGINE_METRICS_PORT)")
    deliver.add_argument("--metrics-host", default=_env("ENGINE_METRICS_HOST") or "127.0.0.1",
                         help="address for --metrics-port (env: ENGINE_METRICS_HOST; "
                              "default 127.0.0.1)")
    # Set by `serve` for the delivery process it starts: its wake-up and metrics pipes.
    deliver.add_argument("--wake-fd", type=int, help=argparse.SUPPRESS)
    deliver.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    deliver.set_defaults(handler=_command("service_commands", "deliver"))

    dead = sub.add_parser("dead-letters", help="list, show, replay or purge dead letters")
    dead.add_argument("action", choices=["list", "show", "replay", "purge"],
                      help="list: one line each; show: whole; replay: queue again; purge: delete")
    dead.add_argument("ids", nargs="*", type=int, metavar="ID", help="dead letters' ids")
    config_option(dead)
    dead.add_argument("--all", action="store_true", help="replay or purge every dead letter")
    dead.set_defaults(handler=_command("outbox_commands", "dead_letters"))

    serve = sub.add_parser("serve", help="run the HTTP shim (Segment's tracking API)")
    config_option(serve)
    serve.add_argument("--host", default=_env("ENGINE_HOST") or "127.0.0.1",
                       help="address to listen on (env: ENGINE_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=_env("ENGINE_PORT") or 8080,
                       help="port to listen on (env: ENGINE_PORT; default 8080)")
    serve.add_argument("--no-deliver", action="store_true",
                       default=(_env("ENGINE_NO_DELIVER") or "0").lower() in ("1", "true", "yes"),
                       help="accept and store only; run `deliver` in another process "
                            "(by default serve starts one beside itself; env: ENGINE_NO_DELIVER=1)")
    log_options(serve)
    serve.set_defaults(handler=_command("service_commands", "serve"))

    shown = sub.add_parser("recorded", help="list the requests a dry-run shim recorded")
    config_option(shown)
    shown.add_argument("--source", metavar="NAME", help="only this source's")
    shown.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    shown.set_defaults(handler=_command("outbox_commands", "recorded"))
    return parser


def _command(module: str, name: str) -> Handler:
    """The function `name` of `engine.cli.<module>`, imported when the command runs."""
    def run(args: argparse.Namespace) -> int:
        handler: Handler = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        return handler(args)
    return run
