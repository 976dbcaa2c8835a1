"""`validate` and `map`: the commands for mapping files (no outbox, no server)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from ..config import load_config
from ..errors import ConfigError, MappingError, SettingsError, UsageError
from ..mapping.destination import Destination
from ..mapping.loader import check, default_mappings, load
from ..mapping.preview import preview
from ..serialization import parse_datetime
from .common import Progress, events_from
from .jsonstream import BadJSON

__all__ = ["validate", "map_events", "explain", "load_destination", "read_settings"]


def _unmappable(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "the event is nested too deeply to map"
    return f"the event cannot be mapped: {exc}"


def validate(args: argparse.Namespace) -> int:
    """`engine validate`: every problem of the mapping files (and the configuration)."""
    destinations, problems = check(args.paths or [default_mappings()])
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
    for destination in destinations.values():
        for note in destination.notes:  # after the verdict: these work, by a slower path
            print(note, file=sys.stderr)
    return 0


def load_destination(mappings: str | None, slug: str) -> Destination:
    """Load `mappings` and return destination `slug`, or raise UsageError saying why not."""
    where = Path(mappings) if mappings is not None else default_mappings()
    if not where.exists():
        raise UsageError(f"no mappings at {where} (run from the directory that holds them, "
                         "or pass --mappings DIR)")
    try:
        destinations = load(where)
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
        except OSError as exc:
            raise UsageError(f"cannot read settings file {file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"cannot read settings file {file}: not UTF-8 text") from None
        except RecursionError:
            raise UsageError(f"cannot read settings file {file}: nested too deeply") from None
        except (ValueError, TypeError, OverflowError):
            # A tag PyYAML cannot apply (`!!float abc`, `!!int x`); what it says holds the
            # value, which may be a key.
            raise UsageError(f"cannot read settings file {file}: a value cannot be read "
                             "as its YAML tag says") from None
        except yaml.YAMLError as exc:
            # Where and what, never the line itself: it may hold an API key.
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else file
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise UsageError(f"cannot read settings file {where}: {problem}") from None
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


def map_events(args: argparse.Namespace) -> int:
    """`engine map`: one JSON line per outcome of each event read."""
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
    progress = Progress(sys.stderr)
    for number, event in enumerate(events_from(args.files), start=1):
        if isinstance(event, BadJSON):
            lines = [orjson.dumps({"event": number, "error": event.message})]
        else:
            try:
                records = preview(bound, event, now=now, show_secrets=args.show_secrets)
                lines = [orjson.dumps({"event": number, **record}) for record in records]
            except (TypeError, ValueError, RecursionError) as exc:
                # What the engine cannot map or write (a lone surrogate, a value JSON has no
                # type for): an outcome of that event, and the stream goes on.
                lines = [orjson.dumps({"event": number, "error": _unmappable(exc)})]
        for line in lines:
            out.write(line + b"\n")
        progress.tick(number)
    out.flush()
    progress.done()
    return 0


def explain(args: argparse.Namespace) -> int:
    """`engine explain SLUG RULE`: the Python function the rule is compiled into when its
    mapping loads, and the templates Jinja renders in it instead."""
    destination = load_destination(args.mappings, args.destination)
    names = [rule.name for rule in destination.rules]
    if args.rule not in names:
        raise UsageError(f"{destination.slug} has no rule '{args.rule}' (its rules: {', '.join(names)})")
    rule = destination.rules[names.index(args.rule)]
    code = next((c for c in destination.codes if c is not None and c.made_from is rule), None)
    if code is None:
        reasons = [n for n in destination.notes if f"rule {args.rule} runs interpreted" in n]
        print(f"# rule {args.rule} runs on the interpreted path" + (f": {reasons[0]}" if reasons else ""))
        return 0
    sys.stdout.write(code.source)
    for origin, source in code.fallbacks:
        print(f"# rendered by Jinja: {origin}: {source!r}")
    return 0
