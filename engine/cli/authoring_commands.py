"""The commands for destination authors: `test` (run mapping files' examples and judge each
one as the test suite does, engine.mapping.examples; `--update` writes their snapshots)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from ..errors import UsageError
from ..mapping.destination import Destination
from ..mapping.examples import check_example, shown_path
from ..mapping.loader import check, default_mappings
from ..mapping.snapshots import SnapshotStore, default_root

__all__ = ["run_tests"]


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
    roots_of_dirs = {Path(snapshots) if snapshots else default_root(p / "x.yaml")
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
