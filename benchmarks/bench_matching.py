"""Rule matching: the cost of finding the rule for an event, with 1, 10, 100 and 1,000
event-name rules.

    python benchmarks/bench_matching.py [--events N] [--rounds R]

A mapping of N track rules, each for one event name (exact names, or normalized ones:
`Event 17` matched by `event_17` too), plus a last rule for any other track event. Events
name the first rule's event, the last one's (exactly and, for normalized names, written
another way), or none of them. Each figure is the CPU time per event of `map_message` (the
whole mapping of an already normalized message), median of interleaved rounds: it stays flat
when matching does not depend on the number of rules. For comparison, the last two lines time
finding the last rule alone: by the dispatch table, and by trying each rule's matchers in
turn, as the engine did before the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.mapping.loader import load  # noqa: E402

SIZES = (1, 10, 100, 1000)


def mapping(rules: int, mode: str) -> str:
    """A destination with `rules` event-name rules (`mode`: exact or normalized)."""
    lines = ["destination: Bench", "slug: bench", "accepts: [track]",
             "request: {method: POST, url: 'https://example.com/e', body: {e: '{{ event }}'}}",
             "rules:"]
    for i in range(rules):
        lines.append(f"  - {{name: r{i}, when: {{type: track, event: 'Event {i}', "
                     f"event_match: {mode}}}}}")
    lines.append("  - {name: other, when: {type: track}, skip: no rule for it}")
    return "\n".join(lines) + "\n"


def events(rules: int, mode: str) -> dict[str, dict[str, Any]]:
    last = f"Event {rules - 1}" if mode == "exact" else f"event_{rules - 1}"
    base = {"type": "track", "userId": "u1", "messageId": "m1"}
    return {"first": {**base, "event": "Event 0"}, "last": {**base, "event": last},
            "none": {**base, "event": "Something Else"}}


def cpu_per_event(bound: Any, event: dict[str, Any], count: int) -> float:
    run = bound.map_message
    start = time.process_time()
    for _ in range(count):
        run(event)
    return (time.process_time() - start) / count


def lookup_only(bound: Any, event: dict[str, Any], count: int) -> float:
    table, name = bound._dispatch, event["event"]
    start = time.process_time()
    for _ in range(count):
        for _rule, _matched in table.candidates("track", name):
            break
    return (time.process_time() - start) / count


def linear_only(bound: Any, event: dict[str, Any], count: int) -> float:
    rules = bound.destination.rules
    start = time.process_time()
    for _ in range(count):
        for rule in rules:
            if rule.matches_call(event, "track"):
                break
    return (time.process_time() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per timing")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    bound: dict[tuple[str, int], Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("exact", "normalized"):
            for size in SIZES:
                path = Path(tmp) / f"{mode}-{size}.yaml"
                path.write_text(mapping(size, mode))
                bound[(mode, size)] = load(path)["bench"].bind({})
    times: dict[tuple[str, int, str], list[float]] = {}
    for _ in range(args.rounds):
        for (mode, size), b in bound.items():
            for kind, event in events(size, mode).items():
                times.setdefault((mode, size, kind), []).append(
                    cpu_per_event(b, event, args.events))
            last = events(size, mode)["last"]
            times.setdefault((mode, size, "table"), []).append(lookup_only(b, last, args.events))
            times.setdefault((mode, size, "linear"), []).append(
                linear_only(b, last, max(args.events // size, 200)))
    print(f"microseconds of CPU per event (median of {args.rounds} interleaved rounds), "
          "map_message of one track event")
    print(f"{'names':<12}{'event':<8}" + "".join(f"{f'{n} rules':>12}" for n in SIZES))
    for mode in ("exact", "normalized"):
        for kind in ("first", "last", "none", "table", "linear"):
            cells = [statistics.median(times[(mode, n, kind)]) * 1e6 for n in SIZES]
            print(f"{mode:<12}{kind:<8}" + "".join(f"{c:>12.2f}" for c in cells))
    print("(table, linear: finding the rule of the `last` event alone, by the dispatch table "
          "and by trying each rule in turn)")


if __name__ == "__main__":
    main()
