"""Intake speed of the HTTP shim: events acknowledged per second, each one durably stored.

    python benchmarks/bench_shim.py [--batches N] [--singles N]

Runs `python -m engine serve` as its own process on 127.0.0.1 (dry-run: requests are
recorded, not sent, so the figure is intake alone) with the shipped mappings and one source sending to Calixa,
Callexa and Skalin. Posts 100-message batches as the official clients do, then single
calls, from one client connection. Every acknowledgement waits for an fsync'd commit.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def event(i: int) -> dict:
    kind = ("identify", "track", "page")[i % 3]
    base = {"type": kind, "userId": f"user_{i % 5000}", "messageId": f"bench-{i}",
            "timestamp": "2024-05-06T09:30:00.000Z",
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"},
                        "ip": "203.0.113.7", "groupId": f"acct_{i % 300}"}}
    if kind == "identify":
        base["traits"] = {"email": f"user{i % 5000}@example.com", "name": "Ann Example", "plan": "pro"}
    elif kind == "track":
        base.update(event="Account Created", properties={"account_name": "Initech", "rows": i})
    else:
        base.update(name="Reports", properties={"path": "/app/reports"})
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--singles", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "bench.yaml"
        config_path.write_text(textwrap.dedent(f"""\
            mappings: {ROOT / 'mappings'}
            store: {Path(tmp) / 'outbox.sqlite3'}
            dry_run: true
            sources:
              - name: bench
                write_key: bench-key
                destinations:
                  calixa: {{api_key: calixa-bench, endpoint: "https://calixa.example/in"}}
                  callexa: {{api_key: callexa-bench, endpoint: "https://callexa.example/in"}}
                  skalin: {{api_key: skalin-bench, client_id: c1}}
            """))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # Its own process, as deployed: a server thread inside the benchmark would share
        # the benchmark's interpreter and measure that instead.
        server = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--config", str(config_path),
                                   "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the shim did not start") from None
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(auth=("bench-key", ""), timeout=30) as client:
            start = time.perf_counter()
            for b in range(args.batches):
                batch = {"batch": [event(b * 100 + i) for i in range(100)]}
                assert client.post(f"{url}/v1/batch", json=batch).json() == {"success": True}
            batched = args.batches * 100 / (time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(args.singles):
                message = event(10_000_000 + i)
                call = message.pop("type")
                assert client.post(f"{url}/v1/{call}", json=message).json() == {"success": True}
            singles = args.singles / (time.perf_counter() - start)
            stored = client.get(f"{url}/health").json()["outbox"]
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.batches} batches of 100 and {args.singles} single calls; {stored}")
    print(f"  batches of 100   {batched:>10,.0f} events/s acknowledged (stored durably)")
    print(f"  single calls     {singles:>10,.0f} events/s acknowledged (stored durably)")


if __name__ == "__main__":
    main()
