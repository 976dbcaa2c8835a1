"""What hostile clients cost the shim: time on its event loop, and memory.

    python benchmarks/bench_hostile.py context   [--code DIR]   # a batch's shared context
    python benchmarks/bench_hostile.py casing    [--code DIR]   # huge trait keys
    python benchmarks/bench_hostile.py webhook   [--code DIR]   # big webhook bodies, bad signature
    python benchmarks/bench_hostile.py slow      [--code DIR]   # clients that trickle

Each runs `python -m engine serve` as its own process on 127.0.0.1 (dry-run, the shipped
mappings) and attacks it as a client with a write key (or none, for webhooks) could:

- context: a batch of small messages sharing a `context` of 30,000 keys, while another
  client asks /health every 10 ms: how long the batch takes to answer, and how long /health
  waits at the worst (the event loop's stall). Median of 3 rounds.
- casing: 4,160 identifies, each with one ~28 KB trait key that Calixa's mapping snake_cases:
  the shim's resident memory before and after (what stays).
- webhook: 4 concurrent ~119 MB bodies with a wrong X-Signature, declared in Content-Length,
  then the same streamed without it (chunked), then 8 concurrent bodies of 15 MB (under
  the default limit of 16 MB): the shim's peak resident memory.

- slow: 500 connections that send a byte a second, half never finishing their head, half
  their body: the shim's open files after 1 and after 71 seconds.

`--code DIR` runs the engine found in DIR (a checkout of another version, say, exported
with `git archive`), to compare before and after in one sitting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"


@contextlib.contextmanager
def shim(code: Path) -> Iterator[tuple[str, int]]:
    """The shim served from `code` on a free port: (its URL, its pid)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(textwrap.dedent(f"""\
            mappings: {ROOT / 'mappings'}
            store: {Path(tmp) / 'outbox.sqlite3'}
            dry_run: true
            sources:
              - name: bench
                write_key: {KEY}
                webhook_secret: hook-secret
                destinations:
                  calixa: {{api_key: calixa-bench, endpoint: "https://calixa.example/in"}}
            """))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--config", str(config),
                                   "--port", str(port), "--log-level", "error"], cwd=code,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the shim did not start") from None
                time.sleep(0.1)
        try:
            yield url, server.pid
        finally:
            server.terminate()
            server.wait(timeout=30)


def memory(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MB of a process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def context(code: Path) -> None:
    for keys, messages in ((30_000, 1500), (2_900, 1500)):
        _context(code, keys, messages)


def _context(code: Path, keys: int, messages: int) -> None:
    shared = {f"k{i}": 1 for i in range(keys)}
    batch = {"batch": [{"type": "track", "userId": f"u{i}", "event": "Signed Up"} for i in range(messages)],
             "context": shared}
    answers, stalls, healthy = [], [], []
    with shim(code) as (url, _):
        for _ in range(3):
            waits: list[float] = []
            done = threading.Event()

            def poll() -> None:
                with httpx.Client(timeout=60) as client:
                    while not done.is_set():
                        start = time.perf_counter()
                        client.get(f"{url}/health")
                        waits.append(time.perf_counter() - start)
                        time.sleep(0.01)
            poller = threading.Thread(target=poll)
            poller.start()
            time.sleep(0.2)
            start = time.perf_counter()
            reply = httpx.post(f"{url}/v1/batch", json=batch, auth=(KEY, ""), timeout=120)
            answers.append(time.perf_counter() - start)
            done.set()
            poller.join()
            stalls.append(max(waits))
            healthy.append(statistics.median(waits))
            batch["batch"][0]["userId"] += "'"  # not a duplicate of the last round
    size = len(json.dumps(shared, separators=(",", ":"))) / 1024
    print(f"a batch of {messages:,} messages sharing a context of {keys:,} keys ({size:,.0f} KB)")
    print(f"  answer                   {reply.status_code}: {reply.text[:100]}")
    print(f"  batch answered in        {statistics.median(answers) * 1000:>8,.0f} ms (median of 3)")
    print(f"  /health, worst wait      {statistics.median(stalls) * 1000:>8,.0f} ms (median of 3)")
    print(f"  /health, median wait     {statistics.median(healthy) * 1000:>8,.1f} ms")


def casing(code: Path) -> None:
    with shim(code) as (url, pid):
        with httpx.Client(auth=(KEY, ""), timeout=60) as client:
            client.post(f"{url}/v1/identify", json={"userId": "warm", "traits": {"a": 1}})
            before = memory(pid)[0]
            sent = 0
            while sent < 4160:
                batch = [{"type": "identify", "userId": f"u{sent + i}",
                          "traits": {f"{sent + i:06d}" + "Trait Key " * 2800: True}} for i in range(16)]
                reply = client.post(f"{url}/v1/batch", json={"batch": batch})
                assert reply.json() == {"success": True}, reply.text[:200]
                sent += len(batch)
            time.sleep(0.5)
            after = memory(pid)[0]
    print(f"{sent:,} identifies, each with one {len('Trait Key ' * 2800) // 1024} KB trait key")
    print(f"  resident memory before   {before:>8,.0f} MB")
    print(f"  resident memory after    {after:>8,.0f} MB  (+{after - before:,.0f} MB kept)")


def webhook(code: Path) -> None:
    _webhook(code, 119 * 1024 * 1024, 4)
    _webhook(code, 15 * 1024 * 1024, 8)


def _webhook(code: Path, size: int, clients: int) -> None:
    chunk = b'{"type":"track","userId":"u","event":"e","properties":{"p":"' + b"x" * 65000 + b'"}},'
    last = b'{"type":"track","userId":"u","event":"e"}]'

    def body() -> Iterator[bytes]:
        yield b"["
        for _ in range(size // len(chunk)):
            yield chunk
        yield last
    length = 1 + (size // len(chunk)) * len(chunk) + len(last)

    def attack(url: str, declared: bool) -> str:
        headers = {"X-Signature": "0" * 40, "Content-Type": "application/json"}
        if declared:
            headers["Content-Length"] = str(length)
        try:
            reply = httpx.post(f"{url}/webhook/bench", content=body(), headers=headers, timeout=300)
            return f"{reply.status_code} {reply.text[:90]}"
        except httpx.HTTPError as exc:  # the shim may answer and close before reading it all
            return f"{type(exc).__name__}"

    for declared in (True, False):
        with shim(code) as (url, pid):
            start = memory(pid)[0]
            outcomes: list[str] = []
            threads = [threading.Thread(target=lambda: outcomes.append(attack(url, declared)))
                       for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            peak = memory(pid)[1]
        how = "with Content-Length" if declared else "chunked, no Content-Length"
        print(f"{clients} concurrent webhook bodies of {length / 1024 / 1024:,.0f} MB, wrong signature, {how}")
        print(f"  resident memory at start {start:>8,.0f} MB")
        print(f"  peak resident memory     {peak:>8,.0f} MB")
        print(f"  answers                  {sorted(set(outcomes))}")


def slow(code: Path) -> None:
    with shim(code) as (url, pid):
        port = int(url.rsplit(":", 1)[1])
        fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))  # noqa: E731
        before = fds()
        sockets = []
        for i in range(500):
            sock = socket.create_connection(("127.0.0.1", port))
            # Half trickle a head that never ends; half send a head and a body that never ends.
            sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                         b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            sockets.append(sock)
        time.sleep(1)
        held = fds()
        for _ in range(70):  # a byte now and then, for 70 seconds
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(b"x")
            time.sleep(1)
        after = fds()
        for sock in sockets:
            sock.close()
    print("500 connections sending a byte a second: half never finish the head, half the body")
    print(f"  shim's open files before {before:>8,}")
    print(f"  after 1 s                {held:>8,}")
    print(f"  after 71 s               {after:>8,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["context", "casing", "webhook", "slow"])
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the directory whose engine/ runs (default: this checkout)")
    args = parser.parse_args()
    os.environ.pop("ENGINE_CONFIG", None)
    {"context": context, "casing": casing, "webhook": webhook, "slow": slow}[args.scenario](args.code.resolve())


if __name__ == "__main__":
    main()
