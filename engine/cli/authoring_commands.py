"""The commands for destination authors: `test` (run mapping files' examples and judge each
one as the test suite does, engine.mapping.examples; `--update` writes their snapshots),
`init` (a starter file that passes both) and `describe` (a destination for the people who
configure it)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from ..errors import UsageError
from ..mapping.describe import describe
from ..mapping.destination import Destination
from ..mapping.examples import check_example, shown_path
from ..mapping.json_schema import SHIPPED
from ..mapping.loader import check, default_mappings
from ..mapping.snapshots import SnapshotStore, default_root
from ..outcomes import REDACTED
from .mapping_commands import load_destination
from .starter import starter_file

__all__ = ["run_tests", "init", "describe_destination"]


def run_tests(args: argparse.Namespace) -> int:
    """Exit 0 when every example passes and no snapshot outlives its example, else 1."""
    if args.update and os.environ.get("CI"):
        # Snapshots are a destination's contract: people write them, and review them.
        raise UsageError("--update writes snapshots; it is refused where CI is set")
    paths = [Path(p) for p in args.paths] or [default_mappings()]
    destinations, problems = check(paths)
    if problems:
        for problem in problems:
            print(problem)
        print(f"{_plural(len(problems), 'problem')} found; no example was run", file=sys.stderr)
        return 1
    stores = _stores(destinations.values(), paths, args.snapshots)
    out = sys.stdout
    failed = passed = written = 0
    orphans: list[Path] = []
    for (store, whole), group in stores.items():
        for destination in group:
            for example in destination.examples:
                verdict = check_example(destination, example, store)
                if args.update and verdict.updatable:
                    assert verdict.text is not None
                    store.write(verdict.snapshot, verdict.text)
                    print(f"wrote {shown_path(verdict.snapshot)}", file=out)
                    written += 1
                    verdict = check_example(destination, example, store)
                if verdict.passed:
                    passed += 1
                else:
                    failed += 1
                    print(verdict.report(), file=out)
        for orphan in store.orphans(group, whole=whole):
            if args.update:
                store.remove(orphan)
                print(f"removed {shown_path(orphan)} (no example has it)", file=out)
            else:
                orphans.append(orphan)
                print(f"{shown_path(orphan)}: a snapshot of no example (renamed or removed?); "
                      "`engine test --update` removes it", file=out)
    print(_summary(passed, failed, len(orphans), written, len(destinations)), file=sys.stderr)
    return 1 if failed or orphans else 0


def _stores(destinations: Iterable[Destination], paths: list[Path],
            snapshots: str | None) -> dict[tuple[SnapshotStore, bool], list[Destination]]:
    """The destinations grouped by the snapshot store they use; a store is `whole` when a
    directory of mapping files was given for it (then a folder no destination has is an
    orphan too)."""
    # A directory's files all use one root: the snapshots/ beside the directory.
    roots_of_dirs = {Path(snapshots) if snapshots else p.resolve().parent / "snapshots"
                     for p in paths if p.is_dir()}
    grouped: dict[tuple[SnapshotStore, bool], list[Destination]] = defaultdict(list)
    for destination in sorted(destinations, key=lambda d: (d.file, d.slug)):
        root = Path(snapshots) if snapshots else default_root(destination.file)
        grouped[(SnapshotStore(root), root in roots_of_dirs)].append(destination)
    return grouped


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def _summary(passed: int, failed: int, orphans: int, written: int, destinations: int) -> str:
    parts = [f"{_plural(passed + failed, 'example')} of {_plural(destinations, 'destination')}: "
             f"{passed:,} passed"]
    if failed:
        parts.append(f"{failed:,} failed")
    if orphans:
        parts.append(_plural(orphans, "snapshot") + " of no example")
    if written:
        parts.append(f"{_plural(written, 'snapshot')} written")
    return ("ok: " if not failed and not orphans else "") + ", ".join(parts)


SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")


def init(args: argparse.Namespace) -> int:
    """`engine init SLUG`: a commented starter mapping file, and its example's snapshot, so
    that it passes `validate` and `test` as written."""
    slug = args.slug
    if not SLUG.fullmatch(slug):
        raise UsageError(f"a slug is lowercase letters, digits and '-' (like acme-crm), got {slug!r}")
    name = args.name or " ".join(word.capitalize() for word in slug.split("-") if word)
    if any(ord(c) < 32 for c in name):
        raise UsageError("a destination's name is one line of text")
    folder = Path(args.mappings) if args.mappings else Path("mappings")
    path = folder / f"{slug}.yaml"
    if path.exists():
        raise UsageError(f"{path} already exists")
    if folder.is_dir():
        others, _ = check([folder])
        if slug in others:
            raise UsageError(f"slug '{slug}' is already used by {others[slug].file}")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_file(slug, name, _schema_for(path), shown_path(path)), encoding="utf-8")
    print(f"wrote {shown_path(path)}")
    destinations, problems = check([path])
    if problems:  # the starter is tested to be valid: this is a bug, said plainly
        raise UsageError("the starter file has problems:\n" + "\n".join(map(str, problems)))
    destination = destinations[slug]
    store = SnapshotStore(Path(args.snapshots) if args.snapshots else default_root(path))
    for example in destination.examples:
        verdict = check_example(destination, example, store)
        if verdict.text is not None:
            store.write(verdict.snapshot, verdict.text)
            print(f"wrote {shown_path(verdict.snapshot)}")
    print(f"next: edit it from {name}'s API docs (docs/authoring.md), then "
          f"`engine validate {shown_path(path)}` and `engine test {shown_path(path)}`",
          file=sys.stderr)
    return 0


def _schema_for(path: Path) -> str:
    """How the new file names the JSON Schema: docs/mapping.schema.json beside its directory
    when there is one (a checkout of this project), else the package's copy."""
    beside = path.resolve().parent.parent / "docs" / "mapping.schema.json"
    if beside.is_file():
        return "../docs/mapping.schema.json"
    return SHIPPED.resolve().as_uri()


def describe_destination(args: argparse.Namespace) -> int:
    """`engine describe SLUG`: what the destination accepts, its settings and its rules."""
    described = describe(load_destination(args.mappings, args.slug))
    if args.json:
        print(json.dumps(described, indent=2, ensure_ascii=False))
        return 0
    print(_as_text(described))
    return 0


def _as_text(d: dict[str, Any]) -> str:
    lines = [f"{d['name']} ({d['slug']}): {shown_path(Path(d['file']))}"]
    if d["description"]:
        lines += textwrap.wrap(d["description"], 92)
    if d["docs"]:
        lines.append(f"docs: {d['docs']}")
    if d["input"] == "raw":
        lines.append("input: any JSON object (an inbound mapping)")
    else:
        accepts = ", ".join(d["accepts"]) if d["accepts"] is not None else "every call type"
        lines.append(f"accepts: {accepts}")
    if d["bulk"]:
        lines.append(f"bulk: up to {d['bulk']['max_items']} requests in one")
    lines.append("")
    lines.append("settings:" if d["settings"] else "settings: none")
    for setting in d["settings"]:
        facts = [setting["type"] or "any type"]
        if setting["required"]:
            facts.append("required")
        if "default" in setting:
            default = setting["default"]
            facts.append(f"default {default if default == REDACTED else _shown(default)}")
        if "allowed" in setting:
            facts.append("one of " + ", ".join(_shown(v) for v in setting["allowed"]))
        if setting["secret"]:
            facts.append("secret")
        lines.append(f"  {setting['name']}: {', '.join(facts)}")
        if setting["description"]:
            lines += ["      " + line for line in textwrap.wrap(setting["description"], 86)]
    lines.append("")
    lines.append("rules, tried in order (the first that matches decides):")
    for rule in d["rules"]:
        lines += textwrap.wrap(f"{rule['name']}: {rule['matches']}; {rule['does']}", 92,
                               initial_indent="  ", subsequent_indent="      ")
        if rule["description"]:
            lines += ["      " + line for line in textwrap.wrap(rule["description"], 86)]
    count = len(d["examples"])
    lines.append("")
    if count:
        lines.append(f"{count} example{'s' if count != 1 else ''}: `engine test "
                     f"{shown_path(Path(d['file']))}` runs {'it' if count == 1 else 'them'}")
    else:
        lines.append("no examples")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
