"""`enqueue`, `dead-letters` and `recorded`: the commands that work on the outbox.

They load no HTTP client and no web framework: only the mappings (for enqueue) and the
outbox.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from ..delivery import open_outbox
from ..delivery.outbox import recorded_view
from ..errors import UsageError
from ..intake import EventResult, Intake
from .common import events_from, open_config
from .jsonstream import BadJSON

__all__ = ["enqueue", "dead_letters", "recorded"]


def enqueue(args: argparse.Namespace) -> int:
    """`engine enqueue`: map events for a source and store the requests, one line each."""
    config = open_config(args.config)
    source = config.any_source(args.source)
    if source is None:
        known = ", ".join([s.name for s in config.sources] + list(config.inbound)) or "none"
        raise UsageError(f"unknown source '{args.source}' (known: {known})")
    outbox = open_outbox(config.store)
    intake = Intake(config, outbox)
    out = sys.stdout.buffer
    stored = duplicates = 0
    try:
        for number, event in enumerate(events_from(args.files), start=1):
            if isinstance(event, BadJSON):
                out.write(orjson.dumps({"event": number, "error": event.message}) + b"\n")
                continue
            try:
                (result,), saved = intake.accept(source, [event])
            except (TypeError, ValueError, RecursionError) as exc:
                # A value the outbox cannot store (a lone surrogate, say): this event's
                # outcome, nothing of it stored; the events after it go on.
                reason = ("nested too deeply to store" if isinstance(exc, RecursionError)
                          else f"cannot be stored: {exc}")
                out.write(orjson.dumps({"event": number, "error": f"the event {reason}"}) + b"\n")
                continue
            stored += saved.stored
            duplicates += saved.duplicates
            line: dict[str, Any] = {"event": number}
            if result.error:
                line["error"] = result.error
            else:
                line["stored"] = [r.destination for r in result.requests]
                if saved.duplicates:
                    line["duplicates"] = saved.duplicates
                line["skipped"] = _skipped(result, list(source.destinations))
            out.write(orjson.dumps(line) + b"\n")
    finally:
        out.flush()
        outbox.close()
    print(f"{stored} request{'s' if stored != 1 else ''} stored in {config.store}"
          + (f", {duplicates} duplicate{'s' if duplicates != 1 else ''}" if duplicates else ""),
          file=sys.stderr)
    return 0


def _skipped(result: EventResult, order: list[str]) -> dict[str, str]:
    """Why each destination that took no request skipped the event, in the source's order."""
    reasons = {s.destination: s.reason for s in result.skipped}
    reasons.update((r.destination, f"rejected: {r.reason}") for r in result.rejected)
    return {slug: reasons[slug] for slug in order if slug in reasons}


def dead_letters(args: argparse.Namespace) -> int:
    """`engine dead-letters list|show|replay|purge`."""
    config = open_config(args.config)
    outbox = open_outbox(config.store)
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


def recorded(args: argparse.Namespace) -> int:
    """`engine recorded`: the requests a dry-run shim recorded, one JSON line each."""
    config = open_config(args.config)
    outbox = open_outbox(config.store)
    try:
        sources = [] if args.source is None else [args.source]
        for row in outbox.rows("recorded", limit=max(1, args.limit), sources=sources):
            sys.stdout.buffer.write(orjson.dumps({"source": row["source"], **recorded_view(row)}) + b"\n")
    finally:
        outbox.close()
    return 0
