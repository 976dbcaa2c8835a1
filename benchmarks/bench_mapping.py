"""Mapping speed: every shipped destination, and Calixa, Callexa and Skalin against
hand-written Python + orjson functions that produce identical output.

Bytes in to request bytes out (method, url, headers, the body as it is sent, the bulk item
as it is stored, deliver_after, once, the dedupe id), one core, CPU time:

    python benchmarks/bench_mapping.py [--events N] [--rounds R] [--only SLUG,...]

For Calixa, Callexa and Skalin, the hand-written functions (benchmarks/hand_written.py)
are checked to give the engine's outcomes first, over the destination's own examples and
over the generated events, and then timed in the same rounds as the engine and the orjson
loads+dumps floor. Every other destination is timed over its examples (those with its
commonest settings), against the floor of the same events.

Rounds interleave the contenders (their order turning each round), and the figures are the
medians: the machine is shared and noisy, so compare the ratios of one run, not absolute
figures across runs. `engine / floor` is the figure to compare across runs and commits.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import hand_written  # noqa: E402

import engine  # noqa: E402
from engine.errors import EventError  # noqa: E402
from engine.serialization import form_encode, format_datetime, parse_datetime  # noqa: E402

NOW = datetime(2024, 5, 6, 12, 0, tzinfo=timezone.utc)

BENCH_SETTINGS: dict[str, dict[str, Any]] = {
    "calixa": {"api_key": "bench-api-key", "endpoint": "https://segment.calixa.example/v1/events"},
    "callexa": {"api_key": "bench-api-key", "endpoint": "https://feedback.callexa.example/segment",
                "min_delay_days": 3, "max_delay_days": 14},
    "skalin": {"api_key": "bench-api-key", "client_id": "bench-client"},
}
"""The settings the three destinations are timed with (Callexa's with the survey delays
on, its costlier path)."""

MIXES: dict[str, dict[str, int]] = {
    "calixa": {"identify": 3, "group": 2, "b2b": 4, "track": 1},
    "callexa": {"identify": 9, "track": 1},
    "skalin": {"track": 6, "page": 2, "identify": 2},
}
"""The kinds of calls each destination is timed with: what it takes, and a few skips."""

Mapper = Callable[[bytes, datetime], list[tuple[Any, ...]]]

_B2B_NAMES = ["Signed Up", "Account Created", "account_created", "Account Deleted",
              "Account Added User", "accountRemovedUser"]


def make_events(count: int, mix: dict[str, int] | None = None, seed: int = 7) -> list[bytes]:
    """Realistic analytics.js messages of about 1 KB, as JSON bytes, of the kinds `mix`
    weighs (track, b2b (B2B SaaS track events), page, identify, group)."""
    rng = random.Random(seed)
    mix = mix or {"track": 3, "page": 1, "identify": 1}
    kinds = [kind for kind, weight in mix.items() for _ in range(weight)]
    events = []
    for i in range(count):
        anonymous = f"{rng.getrandbits(128):032x}"
        kind = rng.choice(kinds)
        base: dict[str, Any] = {
            "anonymousId": anonymous,
            "userId": f"user_{rng.randrange(100000)}" if rng.random() < 0.8 else None,
            "messageId": f"ajs-next-{1714987800000 + i}-{anonymous}",
            "timestamp": f"2024-05-06T09:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z",
            "sentAt": "2024-05-06T09:59:59.999Z",
            "context": {
                "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
                "page": {"path": "/app/reports", "referrer": "https://www.example.com/", "search": "?tab=1",
                         "title": "Reports - Acme", "url": "https://app.example.com/app/reports?tab=1"},
                "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
                             "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "locale": "en-US", "ip": f"203.0.113.{rng.randrange(255)}",
                "groupId": f"acct_{rng.randrange(500)}" if rng.random() < 0.5 else None,
                "campaign": {"name": "spring", "source": "newsletter", "medium": "email",
                             "content": "hero-banner", "term": "reporting software"},
                "timezone": "Europe/Paris", "screen": {"width": 1512, "height": 982, "density": 2},
            },
            "integrations": {},
        }
        if base["userId"] is None:
            del base["userId"]
        if base["context"]["groupId"] is None:
            del base["context"]["groupId"]
        if kind in ("track", "b2b"):
            name = rng.choice(_B2B_NAMES) if kind == "b2b" else \
                rng.choice(["Report Exported", "Dashboard Viewed", "Filter Applied"])
            event = {**base, "type": "track", "event": name,
                     "properties": {"report_id": f"r{rng.randrange(10**6)}", "format": "csv", "rows": rng.randrange(10**5),
                                    "filters": ["status:open", "owner:me"], "duration_ms": rng.randrange(5000)}}
        elif kind == "page":
            event = {**base, "type": "page", "name": "Reports",
                     "properties": {"name": "Reports", "path": "/app/reports", "title": "Reports - Acme",
                                    "url": "https://app.example.com/app/reports?tab=1"}}
        elif kind == "group":
            event = {**base, "type": "group", "userId": base.get("userId", "user_1"),
                     "groupId": f"acct_{rng.randrange(500)}",
                     "traits": {"name": "Initech", "industry": "Technology", "employees": 329,
                                "plan": "enterprise", "total billed": 830}}
        else:
            traits: dict[str, Any] = {"email": f"user{i}@example.com", "name": "Ann Example", "plan": "pro",
                                      "groupId": f"acct_{rng.randrange(500)}", "firstName": "Ann"}
            age = rng.random()
            if age < 0.6:  # a new customer, some created within the min delay
                traits["createdAt"] = f"2024-05-0{rng.randrange(1, 7)}T08:00:00Z"
            elif age < 0.8:
                traits["createdAt"] = "2023-11-02T10:00:00Z"
            if rng.random() < 0.1:
                del traits["email"]
            if rng.random() < 0.3:
                traits["Total Orders Last 90 Days"] = rng.randrange(20)
            event = {**base, "type": "identify", "userId": base.get("userId", "user_1"), "traits": traits}
        events.append(orjson.dumps(event))
    return events


# ---- the engine, with the body as it is sent ------------------------------------------------

def _body_bytes(request: engine.Request) -> bytes | None:
    if request.body is None:
        return None
    if request.encoding == "form":
        return form_encode(request.body)  # as the sender encodes it
    return orjson.dumps(request.body)


def _outcome(outcome: engine.Outcome) -> tuple[Any, ...]:
    if isinstance(outcome, engine.Skip):
        return ("skip", outcome.reason)
    return ("request", outcome.method, outcome.url, dict(outcome.headers), _body_bytes(outcome),
            None if outcome.deliver_after is None else format_datetime(outcome.deliver_after),
            outcome.once_key, outcome.once_window, outcome.message_id,
            None if outcome.batch_into is None else orjson.dumps([outcome.batch_into,
                                                                 outcome.batch_item]))


def with_engine(bound: engine.BoundDestination) -> Mapper:
    """The engine as a Mapper: an event's bytes to its outcomes, bodies encoded."""
    def run(raw: bytes, now: datetime) -> list[tuple[Any, ...]]:
        try:
            outcomes = bound.map(orjson.loads(raw), now=now)
        except EventError:
            return [("error",)]
        return [_outcome(o) for o in outcomes]
    return run


def engine_timed(bound: engine.BoundDestination) -> Callable[[bytes, datetime], Any]:
    """The engine as timed: what delivery needs of each request (its body and bulk item
    encoded), without the tuples `with_engine` makes for comparing."""
    def run(raw: bytes, now: datetime) -> Any:
        try:
            outcomes = bound.map(orjson.loads(raw), now=now)
        except EventError:
            return None
        for outcome in outcomes:
            if type(outcome) is engine.Request:
                _body_bytes(outcome)
                if outcome.batch_into is not None:
                    orjson.dumps([outcome.batch_into, outcome.batch_item])
        return outcomes
    return run


def floor(raw: bytes, now: datetime) -> bytes:
    """What no mapping can beat: reading the event and writing it again."""
    return orjson.dumps(orjson.loads(raw))


# ---- checks before timing --------------------------------------------------------------------

def disagreements(destination: engine.Destination, make: Callable[[dict[str, Any]], Mapper],
                  events: list[bytes], settings: dict[str, Any]) -> list[str]:
    """Where the engine and the hand-written mapper differ: over the destination's examples
    (each with its own settings and clock) and over `events`."""
    found = []
    cases = [(ex.name, dict(ex.settings), orjson.dumps(ex.event), ex.now) for ex in destination.examples]
    cases += [(f"generated #{i}", settings, raw, None) for i, raw in enumerate(events)]
    for name, case_settings, raw, now in cases:
        when = parse_datetime(now) if now is not None else NOW
        assert when is not None
        engine_out = with_engine(destination.bind(case_settings))(raw, when)
        hand_out = make(case_settings)(raw, when)
        if engine_out != hand_out:
            found.append(f"{destination.slug}: {name}:\n  engine:       {engine_out}\n"
                         f"  hand-written: {hand_out}")
    return found


# ---- timing ----------------------------------------------------------------------------------

def _cpu_seconds(fn: Callable[[bytes, datetime], Any], events: list[bytes]) -> float:
    now = NOW
    start = time.process_time()
    for raw in events:
        fn(raw, now)
    return time.process_time() - start


def commonest_settings(destination: engine.Destination) -> tuple[dict[str, Any], list[bytes]]:
    """The settings most of a destination's examples use, with those examples' events."""
    counts = Counter(orjson.dumps(dict(ex.settings), option=orjson.OPT_SORT_KEYS)
                     for ex in destination.examples)
    chosen = counts.most_common(1)[0][0]
    events = [orjson.dumps(ex.event) for ex in destination.examples
              if orjson.dumps(dict(ex.settings), option=orjson.OPT_SORT_KEYS) == chosen]
    return orjson.loads(chosen), events


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10000, help="events per pass (default 10,000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--only", default="", help="comma-separated slugs (default: all)")
    args = parser.parse_args()

    destinations = engine.load(ROOT / "mappings")
    only = {s for s in args.only.split(",") if s}
    slugs = sorted(s for s in destinations if not only or s in only)

    # What each destination is timed with: contenders by name, over one list of events.
    plans: dict[str, tuple[list[bytes], dict[str, Mapper]]] = {}
    for slug in slugs:
        destination = destinations[slug]
        if slug in hand_written.FUNCTIONS:
            settings = BENCH_SETTINGS[slug]
            events = make_events(args.events, MIXES[slug])
            problems = disagreements(destination, hand_written.FUNCTIONS[slug], events, settings)
            if problems:
                sys.exit("the engine and the hand-written function disagree:\n" + "\n".join(problems[:5]))
            contenders = {"hand-written": hand_written.FUNCTIONS[slug](settings)}
        else:
            settings, examples = commonest_settings(destination)
            events = [examples[i % len(examples)] for i in range(max(args.events // 5, len(examples)))]
            contenders = {}
        contenders["engine"] = engine_timed(destination.bind(settings))
        contenders["floor"] = floor
        plans[slug] = (events, contenders)

    times: dict[tuple[str, str], list[float]] = {}
    for round_number in range(args.rounds):
        for slug, (events, contenders) in plans.items():
            names = list(contenders)
            turn = round_number % len(names)
            for name in names[turn:] + names[:turn]:
                times.setdefault((slug, name), []).append(_cpu_seconds(contenders[name], events))

    print(f"CPU time, median of {args.rounds} interleaved rounds; events/s "
          "(hand-written and floor in the same rounds)")
    print(f"{'destination':<22}{'events':>8}{'bytes':>7}{'engine':>11}{'hand-written':>14}"
          f"{'floor':>11}{'engine/hand':>13}{'engine/floor':>14}")
    for slug, (events, contenders) in plans.items():
        size = sum(map(len, events)) / len(events)

        def rate(name: str) -> float:
            return len(events) / statistics.median(times[(slug, name)])

        def ratio(a: str, b: str) -> float:
            # Paired by round: the two were timed one after the other.
            return statistics.median(tb / ta for ta, tb in zip(times[(slug, a)], times[(slug, b)]))
        hand = f"{rate('hand-written'):>14,.0f}" if "hand-written" in contenders else f"{'-':>14}"
        vs_hand = f"{ratio('engine', 'hand-written'):>12.2f}x" if "hand-written" in contenders \
            else f"{'-':>13}"
        print(f"{slug:<22}{len(events):>8,}{size:>7,.0f}{rate('engine'):>11,.0f}{hand}"
              f"{rate('floor'):>11,.0f}{vs_hand}{ratio('engine', 'floor'):>13.3f}x")


if __name__ == "__main__":
    main()
