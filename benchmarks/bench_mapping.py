"""Mapping speed: the engine against hand-written Python producing identical output.

Bytes in to request bytes out, on one core, for a stream of realistic ~1 KB analytics.js
events through the shipped Skalin mapping (the one with the most per-event work: a form
body of eleven fields, three digests, JSON-in-form fields, a customer id from three places):

    python benchmarks/bench_mapping.py [--events N] [--repeat R]

Prints events/s for each approach and the ratios. The machines this runs on are noisy:
compare the ratios from one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine  # noqa: E402

SETTINGS = {"api_key": "bench-api-key", "client_id": "bench-client"}
NOW = "2024-05-06T12:00:00Z"


def make_events(count: int, seed: int = 7) -> list[bytes]:
    """Realistic analytics.js messages of about 1 KB: track, page, identify."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        anonymous = f"{rng.getrandbits(128):032x}"
        kind = rng.choice(["track", "track", "track", "page", "identify"])
        base = {
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
        if kind == "track":
            event = {**base, "type": "track", "event": rng.choice(["Report Exported", "Dashboard Viewed", "Filter Applied"]),
                     "properties": {"report_id": f"r{rng.randrange(10**6)}", "format": "csv", "rows": rng.randrange(10**5),
                                    "filters": ["status:open", "owner:me"], "duration_ms": rng.randrange(5000)}}
        elif kind == "page":
            event = {**base, "type": "page", "name": "Reports",
                     "properties": {"name": "Reports", "path": "/app/reports", "title": "Reports - Acme",
                                    "url": "https://app.example.com/app/reports?tab=1"}}
        else:
            event = {**base, "type": "identify", "userId": base.get("userId", "user_1"),
                     "traits": {"email": f"user{i}@example.com", "name": "Ann Example", "plan": "pro",
                                "groupId": f"acct_{rng.randrange(500)}", "createdAt": "2023-11-02T10:00:00Z"}}
        events.append(orjson.dumps(event))
    return events


# ---- the hand-written mapping: what a careful engineer would write for Skalin ---------------

def _digest(value: object, length: int) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()[:length]


_AUTH = "Basic " + base64.b64encode((SETTINGS["api_key"] + ":").encode()).decode()
_DUMPS = dict(ensure_ascii=False, separators=(",", ":"))


def hand_written(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    event = orjson.loads(raw)
    call = event.get("type")
    traits = event.get("traits") or {}
    context = event.get("context") or {}
    properties = event.get("properties") or {}
    user_id = event.get("userId")
    who = event.get("anonymousId") or user_id
    timestamp = event.get("timestamp")
    form = {"rec": "1", "client_id": SETTINGS["client_id"]}
    trait = traits.get("trait") if isinstance(traits.get("trait"), dict) else {}
    customer = traits.get("groupId") or trait.get("groupId") or context.get("groupId")
    if customer:
        form["customer_id"] = str(customer)
    if event.get("messageId"):
        form["event_id"] = _digest(event["messageId"], 16)
    if who:
        form["visitor_id"] = _digest(who, 16)
    stamp = timestamp or "2024-05-06T12:00:00.000Z"
    session = context.get("sessionId") or f"{who}|{stamp[:10]}"
    form["visit_id"] = _digest(session, 16)
    form["ts"] = stamp
    url = (context.get("page") or {}).get("url") or properties.get("url")
    if url:
        form["url"] = url
    if context.get("ip"):
        form["cip"] = context["ip"]
    if call in ("page", "screen", "track"):
        feature = event.get("event") if call == "track" else (event.get("name") or properties.get("name"))
        form["action"] = "ev"
        email = (context.get("traits") or {}).get("email")
        if email or user_id:
            form["identity"] = json.dumps({"email": email} if email else {"id": user_id}, **_DUMPS)
        form["event"] = json.dumps({"name": feature, "event_name": "feature"}, **_DUMPS)
    else:
        form["action"] = "ui"
        email = traits.get("email")
        form["identity"] = json.dumps({"email": email} if email else {"id": user_id}, **_DUMPS)
    headers = {"Cache-Control": "no-cache", "Authorization": _AUTH,
               "Content-Type": "application/x-www-form-urlencoded"}
    return "https://collect.skalin.io/hit", headers, urlencode(form).encode()


def with_engine(bound: engine.BoundDestination):
    def run(raw: bytes) -> tuple[str, dict[str, str], bytes]:
        (request,) = bound.map(orjson.loads(raw), now=NOW)
        return request.url, dict(request.headers), urlencode(request.body).encode()
    return run


def json_only(raw: bytes) -> bytes:
    return orjson.dumps(orjson.loads(raw))


def timed(fn, events: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for raw in events:
            fn(raw)
        best = min(best, time.perf_counter() - start)
    return len(events) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    bound = engine.load(Path(__file__).resolve().parent.parent / "mappings")["skalin"].bind(SETTINGS)
    events = make_events(args.events)
    mapped = with_engine(bound)
    for raw in events:  # the two must agree before their speeds mean anything
        assert mapped(raw) == hand_written(raw), orjson.loads(raw)
    size = sum(map(len, events)) / len(events)

    rates = {
        "json loads+dumps only": timed(json_only, events, args.repeat),
        "hand-written Python": timed(hand_written, events, args.repeat),
        "engine (skalin.yaml)": timed(mapped, events, args.repeat),
    }
    print(f"{len(events):,} events, {size:,.0f} bytes each on average, best of {args.repeat}, one core")
    for name, rate in rates.items():
        print(f"  {name:<24} {rate:>10,.0f} events/s")
    ratio = rates["engine (skalin.yaml)"] / rates["hand-written Python"]
    print(f"  engine / hand-written    {ratio:>10.2f}x  (target >= 0.50x)")
    print(f"  engine / json only       {rates['engine (skalin.yaml)'] / rates['json loads+dumps only']:>10.2f}x")


if __name__ == "__main__":
    main()
