"""Mapping speed of this tree against an earlier revision: every destination both trees
ship, each tree with its own engine and mapping files, on the same events.

    .venv/bin/python benchmarks/bench_trees.py [--base REV] [--runs 3] [--rounds 5] [--only a,b]

The base revision is exported (`git archive`) to a temporary directory. Each run times
both trees one after the other, in separate processes, alternating which goes first; a
process maps each destination's documented examples (those with its commonest settings,
2,000 events) and times, in interleaved rounds, the engine (bytes in to the body and bulk
item as they are sent) and the orjson loads+dumps floor of the same events. `engine /
floor` is the figure that travels between processes; the table gives its median over the
runs for each tree and their ratio (the speed-up). The default base is the tree before
issue 12 (one generated function per rule), whose "no destination slower" this checks.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
BEFORE_CODEGEN = "0b61cfe"  # main before the merge of issue 12 (986f1da^1)
NOW = datetime(2024, 5, 6, 12, 0, tzinfo=timezone.utc)
EVENTS = 2_000


def child(root: str, only: set[str], rounds: int) -> None:
    """In a process of its own: `slug ratio` lines for the tree at `root`."""
    sys.path.insert(0, root)
    import orjson

    import engine
    from urllib.parse import urlencode

    encode: Callable[[Any], bytes]
    try:  # the sender's form encoder
        encode = importlib.import_module("engine.serialization").form_encode
    except (ImportError, AttributeError):  # before it had its own: urlencode
        encode = lambda form: urlencode(form).encode("ascii")  # noqa: E731

    def sent(request: Any) -> Any:
        if request.body is None:
            return None
        return encode(request.body) if request.encoding == "form" else orjson.dumps(request.body)

    destinations = engine.load(Path(root) / "mappings")
    for slug in sorted(destinations):
        if only and slug not in only:
            continue
        dest = destinations[slug]
        keyed = [(orjson.dumps(dict(e.settings), option=orjson.OPT_SORT_KEYS), e) for e in dest.examples]
        commonest = Counter(key for key, _ in keyed).most_common(1)[0][0]
        chosen = [orjson.dumps(e.event) for key, e in keyed if key == commonest]
        events = (chosen * (EVENTS // len(chosen) + 1))[:EVENTS]
        bound = dest.bind(orjson.loads(commonest))

        def mapped(raw: bytes, bound: Any = bound) -> None:
            try:
                outcomes = bound.map(orjson.loads(raw), now=NOW)
            except engine.EventError:
                return
            for outcome in outcomes:
                if type(outcome) is engine.Request:
                    sent(outcome)
                    if outcome.batch_into is not None:
                        orjson.dumps([outcome.batch_into, outcome.batch_item])

        def floor(raw: bytes) -> None:
            orjson.dumps(orjson.loads(raw))

        times: dict[str, list[float]] = {"engine": [], "floor": []}
        pair: list[tuple[str, Callable[[bytes], None]]] = [("engine", mapped), ("floor", floor)]
        for round_ in range(rounds):
            for name, fn in pair if round_ % 2 == 0 else pair[::-1]:
                start = time.process_time()
                for raw in events:
                    fn(raw)
                times[name].append(time.process_time() - start)
        print(slug, statistics.median(times["floor"]) / statistics.median(times["engine"]))


def export(revision: str, into: Path) -> Path:
    """The tree of `revision`, written under `into`."""
    archive = into / "tree.tar"
    with archive.open("wb") as out:
        done = subprocess.run(["git", "-C", str(ROOT), "archive", revision], stdout=out,
                              stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_trees: revision {revision!r} is not in this clone (a shallow clone? "
                 f"`git fetch --unshallow`, or pass --base): {done.stderr.strip()}")
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def ratios(root: Path, only: str, rounds: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", str(root), "--only", only,
                           "--rounds", str(rounds)], capture_output=True, text=True, check=True)
    return {slug: float(r) for slug, r in (line.split() for line in done.stdout.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=BEFORE_CODEGEN, help="the revision to compare with")
    parser.add_argument("--runs", type=int, default=3, help="runs of both trees (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per run")
    parser.add_argument("--only", default="", help="comma-separated slugs (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, set(args.only.split(",")) - {""}, args.rounds)
        return
    with tempfile.TemporaryDirectory() as temporary:
        base = export(args.base, Path(temporary))
        found: dict[str, dict[str, list[float]]] = {"base": {}, "this": {}}
        for run in range(args.runs):
            order = [("base", base), ("this", ROOT)]
            for name, root in order if run % 2 == 0 else order[::-1]:
                for slug, ratio in ratios(root, args.only, args.rounds).items():
                    found[name].setdefault(slug, []).append(ratio)
    print(f"engine / floor, CPU time, median of {args.runs} runs of each tree ({args.rounds} "
          f"interleaved rounds each); base {args.base}")
    print(f"{'destination':<22}{'base':>10}{'this tree':>11}{'speed-up':>10}")
    for slug in sorted(set(found["base"]) & set(found["this"])):
        before, after = (statistics.median(found[n][slug]) for n in ("base", "this"))
        print(f"{slug:<22}{before:>10.3f}{after:>11.3f}{after / before:>9.2f}x")


if __name__ == "__main__":
    main()
