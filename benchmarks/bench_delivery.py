"""Delivery speed, end to end: events accepted by the shim, then delivered to the destinations.

    python benchmarks/bench_delivery.py [--events N] [--small N] [--large N] [--skip-large]
                                        [--floor-requests N] [--timeout SECONDS]
    python benchmarks/bench_delivery.py --scale [--scale-events N] [--rounds N]

Runs the engine as a user would: `python -m engine serve` and `python -m engine deliver`,
each as its own process, with the shipped mappings and one source sending to Calixa,
Callexa and Skalin, all three pointed at one receiver on 127.0.0.1 (a minimal asyncio
HTTP/1.1 server in a process of its own that answers 200 `{}` at once and counts what it
gets). ~1 KB events, identify/track/page, map to 1.8 requests each on average (delivery
may send several of them as one bulk request, as Skalin's mapping allows: "requests/s" are
HTTP requests received). In one run:

- end to end (--events, 10,000): a delivering shim takes the events in batches of 100, as
  the official clients send them; accepted events/s until the last batch is acknowledged,
  delivered events/s and requests/s until `GET /health` shows no pending job;
- backlog (--small 1,000, --large 100,000): a `serve --no-deliver` shim stores the events,
  then `deliver --until-idle` sends them; the rate is the receiver's (first to last
  request), so process start-up is not counted; a good outbox keeps its rate as it grows;
- peak RSS (VmHWM) of the delivering shim and of each `deliver`;
- the floor: the same requests, from the mapping library, sent by a raw asyncio client
  (keep-alive, one connection per delivery slot of a destination) to the same receiver.

`--scale` measures instead how intake and delivery go with 1, 2 and 4 processes of each kind
on one outbox, SQLite and PostgreSQL (a throwaway server started for the run, with fsync on,
as Debian ships it): accepted and delivered events/s, the median of interleaved rounds.
SQLite allows one delivering process, so its runs have one whatever the number of shims.

Callexa surveys a customer once in 26 weeks: from event 5,000 on, identifies of customers
already surveyed are suppressed, not sent; an event counts as delivered once nothing of it
is pending. Every wait gives up after --timeout seconds and prints what it measured so far.
The machines this runs on are noisy: compare the ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402

BATCH = 100
WRITE_KEY = "bench-key"
CONCURRENCY = 8
"""The configuration's `delivery.concurrency`: requests in flight per destination."""
CONTROL = "/__bench/"
"""The receiver's own endpoints (stats, reset) start with this; they are not counted."""
BULK = "/bulk"
"""A request to a path ending so is a bulk request (Skalin's POST /hit/bulk): a JSON object
whose arrays hold the mapped requests it carries."""
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def event(i: int) -> dict[str, Any]:
    """Message `i` of a stream as analytics.js sends it, about 1 KB. Kinds go identify,
    track, page, track, page: an identify maps to three requests, an Account Created or
    Signed Up to two (Calixa, Skalin), a page to one (Skalin): 1.8 on average. 5,000
    users: user_k is identified again by message k + 5,000, k + 10,000, ..."""
    kind = ("identify", "track", "page", "track", "page")[i % 5]
    user = i % 5000
    base: dict[str, Any] = {
        "type": kind, "userId": f"user_{user}", "messageId": f"bench-{i}",
        "anonymousId": f"anon-{user:08d}-4e2b-9c1d-7f3a5b6c8d9e",
        "timestamp": "2024-05-06T09:30:00.000Z", "sentAt": "2024-05-06T09:30:01.250Z",
        "context": {
            "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
            "ip": "203.0.113.7", "groupId": f"acct_{i % 300}", "locale": "en-US",
            "timezone": "Europe/Paris", "screen": {"width": 1512, "height": 982, "density": 2},
            "os": {"name": "Mac OS X", "version": "10.15.7"}, "device": {"type": "desktop"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
                         "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "page": {"path": "/app/reports", "referrer": "https://www.example.com/", "search": "?tab=1",
                     "title": "Reports - Acme", "url": "https://app.example.com/app/reports?tab=1"},
            "campaign": {"name": "spring", "source": "newsletter", "medium": "email",
                         "content": "hero-banner", "term": "reporting software"},
        },
    }
    if kind == "identify":
        base["traits"] = {"email": f"user{user}@example.com", "name": "Ann Example", "plan": "pro",
                          "company": {"name": "Initech", "industry": "Software", "employees": 120}}
    elif kind == "track":
        base.update(event="Account Created" if i % 5 == 1 else "Signed Up",
                    properties={"account_name": "Initech", "rows": i, "plan": "pro"})
    else:
        base.update(name="Reports", properties={"path": "/app/reports", "title": "Reports - Acme"})
    return base


def settings(receiver_port: int) -> dict[str, dict[str, str]]:
    """Each destination's settings, all pointing at the receiver."""
    at = f"http://127.0.0.1:{receiver_port}"
    return {"calixa": {"api_key": "calixa-bench", "endpoint": f"{at}/calixa"},
            "callexa": {"api_key": "callexa-bench", "endpoint": f"{at}/callexa"},
            "skalin": {"api_key": "skalin-bench", "client_id": "c1", "endpoint": f"{at}/skalin"}}


def write_config(directory: Path, receiver_port: int, store: str | None = None) -> Path:
    """A configuration with an outbox of its own in `directory` (each run starts empty), or
    in `store` (an empty PostgreSQL schema's URL)."""
    directory.mkdir(parents=True)
    destinations = "\n".join(f"      {slug}: {orjson.dumps(values).decode()}"
                             for slug, values in settings(receiver_port).items())
    path = directory / "bench.yaml"
    path.write_text(textwrap.dedent(f"""\
        mappings: {ROOT / 'mappings'}
        store: {orjson.dumps(store or str(directory / 'outbox.sqlite3')).decode()}
        dry_run: false
        delivery: {{timeout: 10, backoff_initial: 0.1, backoff_max: 1, max_attempts: 5,
                   max_age: 600, concurrency: {CONCURRENCY}}}
        sources:
          - name: bench
            write_key: {WRITE_KEY}
            destinations:
        """) + destinations + "\n")
    return path


# ---- the receiver: its own process, so that it never shares a GIL with a client ---------

class _Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.items = 0  # the mapped requests they carry: one each, or a bulk request's items
        self.first: float | None = None
        self.last: float | None = None
        self.paths: dict[str, int] = {}

    def control(self, target: str) -> bytes:
        if target == CONTROL + "reset":
            self.reset()
        body = orjson.dumps({"requests": self.requests, "items": self.items, "first": self.first,
                             "last": self.last, "paths": self.paths})
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class _Receiving(asyncio.Protocol):
    """One keep-alive connection: request line, headers, Content-Length body; 200 `{}`."""

    def __init__(self, counts: _Counts) -> None:
        self.counts = counts
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return  # the rest of the body is on its way
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            target = lines[0].split(" ")[1]
            if target.startswith(CONTROL):
                self.transport.write(self.counts.control(target))
                continue
            now = time.monotonic()
            path = target.partition("?")[0]
            counts = self.counts
            counts.requests += 1
            if path.endswith(BULK):
                counts.items += sum(len(v) for v in orjson.loads(body).values() if isinstance(v, list))
            else:
                counts.items += 1
            counts.first = now if counts.first is None else counts.first
            counts.last = now
            counts.paths[path] = counts.paths.get(path, 0) + 1
            self.transport.write(OK)


def run_receiver() -> None:
    """Serve on a free port of 127.0.0.1, print it, and count until killed."""
    async def serve() -> None:
        counts = _Counts()
        server = await asyncio.get_running_loop().create_server(
            lambda: _Receiving(counts), "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(serve())


@dataclass(frozen=True)
class Received:
    """What the receiver got since its last reset."""

    requests: int
    items: int
    first: float | None
    last: float | None
    paths: dict[str, int]

    @property
    def span(self) -> float:
        """Seconds from the first request to the last."""
        return 0.0 if self.first is None or self.last is None else self.last - self.first


class Receiver:
    """The receiver process, and its figures read over `GET /__bench/...`."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--receiver"], cwd=ROOT,
                                        stdout=subprocess.PIPE, start_new_session=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the receiver did not start")
        self.port = int(line)
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def stats(self, action: str = "stats") -> Received:
        data = self._client.get(CONTROL + action).json()
        return Received(data["requests"], data["items"], data["first"], data["last"], data["paths"])

    def reset(self) -> None:
        self.stats("reset")

    def close(self) -> None:
        self._client.close()
        self.process.kill()
        self.process.wait()


# ---- engine processes --------------------------------------------------------------------

STARTED: list[EngineProcess] = []
"""Every engine process started: main() kills what is left of them, whatever happens."""


class EngineProcess:
    """`python -m engine ARGS`, in a session of its own (Ctrl-C reaches the benchmark, which
    then kills the group), output to `log`; the peak RSS (VmHWM) of it and of every process
    it starts (the shim may deliver in a child process) sampled every 100 ms."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        STARTED.append(self)
        self.peaks_kb: dict[int, int] = {}  # pid -> VmHWM; the engine's own process first
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._sample_every, args=(0.1,), daemon=True)
        self._watch.start()

    def _sample(self) -> None:
        pids, i = [self.process.pid], 0
        while i < len(pids):  # the process tree, breadth first
            with contextlib.suppress(OSError):  # gone already (wait() has the main one's figure)
                for task in os.listdir(f"/proc/{pids[i]}/task"):
                    with open(f"/proc/{pids[i]}/task/{task}/children") as children:
                        pids += [int(pid) for pid in children.read().split()]
            i += 1
        for pid in pids:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):  # absent once a process is a zombie
                        self.peaks_kb[pid] = max(self.peaks_kb.get(pid, 0), int(line.split()[1]))

    def _sample_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self._sample()

    @property
    def peaks_mb(self) -> list[float]:
        return [kb / 1024 for kb in self.peaks_kb.values()]

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the process to exit; True if it did. Then ends
        whatever of its session outlives it, and reaps it with wait4, whose ru_maxrss is
        the peak of its last moments too, which a 100 ms poll may miss."""
        pid = self.process.pid
        deadline = time.monotonic() + timeout
        while self.process.returncode is None:
            # WNOWAIT: it stays a zombie, so its pid (its group's id) cannot be reused yet.
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                self.process.returncode = os.waitstatus_to_exitcode(status)
                self._stop.set()
                self._watch.join()
                self.peaks_kb[pid] = max(self.peaks_kb.get(pid, 0), usage.ru_maxrss)  # KB
            elif time.monotonic() >= deadline:
                return False
            else:
                time.sleep(0.05)
        return True

    def stop(self, grace: float = 60.0) -> None:
        """SIGTERM (the process drains and exits), then SIGKILL after `grace` seconds."""
        if self.process.returncode is None:
            self._sample()  # the last look while it still runs
            self.process.send_signal(signal.SIGTERM)
            if not self.wait(grace):
                self.kill()

    def kill(self) -> None:
        """SIGKILL it and its session at once (a no-op once it has exited)."""
        self._stop.set()
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # not reaped yet: still its group
            self.wait(60)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stopped as a user would stop it; killed at once on an error or Ctrl-C."""
        if kind is None:
            self.stop()
        else:
            self.kill()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def serve(config: Path, log: Path, *, deliver: bool) -> tuple[EngineProcess, str]:
    """A shim on a free port, answering /health; its process and its URL."""
    port = _free_port()
    args = ["serve", "--config", str(config), "--port", str(port)]
    shim = EngineProcess(args + ([] if deliver else ["--no-deliver"]), log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1).raise_for_status()
            return shim, url
        except httpx.HTTPError:
            if time.monotonic() > deadline or shim.wait(0):
                shim.kill()
                raise SystemExit(f"the shim did not start:\n{shim.log_tail()}") from None
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def post_events(client: httpx.Client, url: str, count: int, deadline: float, first: int = 0) -> int:
    """Post events first..first+count-1 in batches of 100, each acknowledged before the
    next (as an official client does); stop early at `deadline`. Returns how many were
    accepted."""
    sent = 0
    while sent < count and time.monotonic() < deadline:
        size = min(BATCH, count - sent)
        body = orjson.dumps({"batch": [event(first + sent + i) for i in range(size)]})
        reply = client.post(f"{url}/v1/batch", content=body,
                            headers={"Content-Type": "application/json"})
        if reply.json() != {"success": True}:
            raise SystemExit(f"the shim refused a batch: {reply.status_code} {reply.text[:500]}")
        sent += size
    return sent


def outbox_counts(client: httpx.Client, url: str) -> dict[str, int]:
    counts: dict[str, int] = client.get(f"{url}/health").json()["outbox"]
    return counts


# ---- the measurements --------------------------------------------------------------------

@dataclass
class Run:
    """One delivery measurement. `complete` is False when a wait ran out of time."""

    events: int
    requests: int  # HTTP requests the receiver got
    items: int  # the mapped requests they carried (more than `requests` when some were bulk)
    seconds: float
    complete: bool = True
    outbox: dict[str, int] = field(default_factory=dict)
    peaks_mb: list[float] = field(default_factory=list)  # of each process, the engine's first
    note: str = ""

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.seconds if self.seconds > 0 else None

    @property
    def requests_per_s(self) -> float | None:
        return self.requests / self.seconds if self.seconds > 0 else None


@dataclass
class EndToEnd:
    accepted: int
    accepted_seconds: float
    delivered: Run


def end_to_end(count: int, receiver: Receiver, work: Path, timeout: float) -> EndToEnd:
    """A delivering shim: N events posted; accepted until the last ack, delivered until
    nothing is pending."""
    config = write_config(work / "end-to-end", receiver.port)
    receiver.reset()
    shim, url = serve(config, work / "end-to-end" / "serve.log", deliver=True)
    with shim, httpx.Client(auth=(WRITE_KEY, ""), timeout=60) as client:
        start = time.perf_counter()
        accepted = post_events(client, url, count, time.monotonic() + timeout)
        accepted_seconds = time.perf_counter() - start
        deadline = time.monotonic() + timeout
        while (counts := outbox_counts(client, url)).get("pending") and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    pending = counts.get("pending", 0)
    received = receiver.stats()
    if pending:
        # What is done is worth this many events, at 1.8 requests each or fewer (suppressed).
        done = accepted * (1 - pending / max(1, sum(counts.values())))
        run = Run(round(done), received.requests, received.items, seconds, False, counts,
                  shim.peaks_mb, f"--timeout: stopped after {seconds:,.0f} s, {pending:,} requests pending")
    else:
        run = Run(accepted, received.requests, received.items, seconds, True, counts, shim.peaks_mb)
    if accepted < count:
        run.note = f"--timeout: {accepted:,} of {count:,} events accepted; " + run.note
    return EndToEnd(accepted, accepted_seconds, run)


def backlog(name: str, count: int, receiver: Receiver, work: Path, timeout: float) -> Run:
    """`count` events stored by an intake-only shim, then sent by `deliver --until-idle`;
    the rate is the receiver's, first request to last."""
    directory = work / f"backlog-{name}"
    config = write_config(directory, receiver.port)
    shim, url = serve(config, directory / "serve.log", deliver=False)
    with shim, httpx.Client(auth=(WRITE_KEY, ""), timeout=60) as client:
        accepted = post_events(client, url, count, time.monotonic() + timeout)
        stored = outbox_counts(client, url)
    receiver.reset()
    # Stopped (SIGTERM) on leaving only if it is still at it, i.e. it timed out.
    with EngineProcess(["deliver", "--config", str(config), "--until-idle"],
                       directory / "deliver.log") as deliverer:
        finished = deliverer.wait(timeout)
    received = receiver.stats()
    note = "" if accepted == count else f"--timeout: {accepted:,} of {count:,} events stored; "
    if finished and deliverer.process.returncode != 0:
        raise SystemExit(f"`deliver` failed ({deliverer.process.returncode}):\n{deliverer.log_tail()}")
    if finished:
        return Run(accepted, received.requests, received.items, received.span, True,
                   _deliver_summary(deliverer), deliverer.peaks_mb, note)
    # Cut off: the events whose requests arrived (counting suppressed ones as not done).
    done = accepted * received.items / max(1, stored.get("pending", 0))
    return Run(round(done), received.requests, received.items, received.span, False, {},
               deliverer.peaks_mb, note + f"--timeout: stopped after {timeout:,.0f} s")


def _deliver_summary(process: EngineProcess) -> dict[str, int]:
    """The outbox's counts `deliver` prints as it exits ("17000 delivered, 1000 suppressed")."""
    counts = {}
    for part in process.log_tail(1).split(", "):
        number, _, status = part.partition(" ")
        if number.isdigit():
            counts[status] = int(number)
    return counts


def mapped_requests(receiver_port: int, events: int) -> list[engine.Request]:
    """The requests events 0..events-1 map to, from the mapping library."""
    loaded = engine.load(ROOT / "mappings")
    bound = [loaded[slug].bind(values) for slug, values in settings(receiver_port).items()]
    return [outcome for i in range(events) for destination in bound
            for outcome in destination.map(event(i)) if isinstance(outcome, engine.Request)]


def wire(request: engine.Request) -> bytes:
    """`request` as HTTP/1.1 bytes, its body as the engine sends it: compact JSON (orjson)
    or a urlencoded form."""
    url = urlsplit(request.url)
    headers = {"Host": url.netloc, **request.headers}
    if request.body is None:
        body = b""
    elif request.encoding == "form":
        body = urlencode(request.body).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    else:
        body = orjson.dumps(request.body)
    headers["Content-Length"] = str(len(body))
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    head = f"{request.method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


async def _raw_client(port: int, requests: list[engine.Request], total: int,
                      connections: int) -> float:
    """Send `total` requests (cycling through `requests`) over `connections` keep-alive
    connections, one request in flight on each; seconds taken."""
    async def connection(first: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in range(first, total, connections):
                writer.write(wire(requests[n % len(requests)]))
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"the receiver answered {head[:40]!r}")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection(k) for k in range(connections)))
    return time.perf_counter() - start


def floor(receiver: Receiver, requests: list[engine.Request], total: int, timeout: float) -> Run:
    """The raw client's rate: the receiver's count over the client's time."""
    receiver.reset()
    try:
        seconds = asyncio.run(asyncio.wait_for(
            _raw_client(receiver.port, requests, total, CONCURRENCY), timeout))
        complete = True
    except TimeoutError:
        seconds, complete = timeout, False
    received = receiver.stats()
    return Run(0, received.requests, received.items, seconds, complete)


# ---- the report --------------------------------------------------------------------------

def _n(value: float | None, suffix: str) -> str:
    return f"{'n/a':>8} {suffix}" if value is None else f"{value:>8,.0f} {suffix}"


def _ratio(label: str, top: Run | float | None, bottom: Run | float | None, target: float) -> str:
    """`top / bottom` (runs compare by events/s), against the target; "partial" when a run
    was cut off by --timeout."""
    values = [x.events_per_s if isinstance(x, Run) else x for x in (top, bottom)]
    partial = any(isinstance(x, Run) and not x.complete for x in (top, bottom))
    ratio = "    n/a" if values[0] is None or not values[1] else f"{values[0] / values[1]:>7.2f}x"
    return f"  {label:<36} {ratio}   (target >= {target}x){'  (partial)' if partial else ''}"


def _rate_line(label: str, run: Run) -> str:
    events = _n(run.events_per_s, "events/s")
    line = f"  {label:<36}{events}  {_n(run.requests_per_s, 'requests/s')}"
    if not run.complete:
        line += f"   (partial: {run.note})"
    elif run.note:
        line += f"   ({run.note})"
    return line


def _megabytes(peaks: list[float]) -> str:
    """The peak RSS of a process, or of a process and its children: each one's peak summed
    (they need not peak at once: an upper bound)."""
    total = f"{sum(peaks):,.0f} MB"
    if len(peaks) < 2:
        return total
    return f"{total} ({len(peaks)} processes: {' + '.join(f'{mb:,.0f}' for mb in peaks)})"


def _check_line(label: str, run: Run) -> str:
    """The receiver's count against the outbox's, which must agree (when the run was cut
    off, the process delivered on after the outbox was last read)."""
    got = f"    {label}: receiver got {run.requests:,} requests carrying {run.items:,}"
    if not run.complete:
        return f"{got} (cut off: no final outbox count)"
    delivered = run.outbox.get("delivered")
    agree = "" if delivered is None else (" = outbox delivered" if delivered == run.items
                                          else f" != outbox delivered {delivered:,}  (MISMATCH)")
    rest = ", ".join(f"{n:,} {status}" for status, n in sorted(run.outbox.items())
                     if status != "delivered")
    return got + agree + (f"; {rest}" if rest else "")


# ---- scale-out: several shims and delivery processes on one outbox ----------------------

SCALE_PROCESSES = (1, 2, 4)
BACKENDS = ("sqlite", "postgresql")


@dataclass
class ScaleRun:
    """One run of `shims` intake processes and `deliverers` delivery processes."""

    accepted_per_s: float
    delivered_per_s: float | None  # None: the outbox did not drain before --timeout


def scale_run(backend: str, processes: int, count: int, receiver: Receiver, work: Path,
              postgres: Any, timeout: float) -> ScaleRun:
    """`processes` shims (`serve --no-deliver`), each posted count/processes events by a
    client thread of its own, and as many `deliver` processes (one for SQLite, which allows
    no more), all on one new outbox. Accepted: events over the time until the last batch
    is acknowledged; delivered: events over the time until nothing is pending, both from
    the first post. Delivery processes start before the clock, idle."""
    directory = work / f"scale-{backend}-{processes}-{time.monotonic_ns()}"
    config = write_config(directory, receiver.port, postgres.store() if backend == "postgresql" else None)
    deliverers = processes if backend == "postgresql" else 1
    with contextlib.ExitStack() as running:
        shims = [serve(config, directory / f"serve-{i}.log", deliver=False) for i in range(processes)]
        for shim, _ in shims:
            running.enter_context(shim)
        for i in range(deliverers):
            running.enter_context(EngineProcess(["deliver", "--config", str(config)],
                                                directory / f"deliver-{i}.log"))
        time.sleep(3)  # the delivery processes are up and idle (imports, connections)
        receiver.reset()
        share = count // processes
        done: list[float] = []
        deadline = time.monotonic() + timeout

        def client(i: int, url: str) -> None:
            with httpx.Client(auth=(WRITE_KEY, ""), timeout=60) as http:
                post_events(http, url, share, deadline, first=i * share)
            done.append(time.perf_counter())

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i, url)) for i, (_, url) in enumerate(shims)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = share * processes / (max(done) - start)
        with httpx.Client(timeout=60) as http:
            while outbox_counts(http, shims[0][1]).get("pending") and time.monotonic() < deadline:
                time.sleep(0.05)
            drained = not outbox_counts(http, shims[0][1]).get("pending")
        delivered = share * processes / (time.perf_counter() - start) if drained else None
    return ScaleRun(accepted, delivered)


def scale_report(args: argparse.Namespace, receiver: Receiver, work: Path, postgres: Any) -> None:
    """Every (backend, processes) run once per round, the rounds one after the other (so
    that the machine's moods fall on all alike); the median of each."""
    print(f"scale-out: {args.scale_events:,} events a run, batches of {BATCH}, one client thread "
          f"per shim, median of {args.rounds} interleaved rounds, one machine ({os.cpu_count()} cores)",
          flush=True)
    runs: dict[tuple[str, int], list[ScaleRun]] = {}
    for round_ in range(args.rounds):
        for processes in SCALE_PROCESSES:
            for backend in BACKENDS:
                run = scale_run(backend, processes, args.scale_events, receiver, work, postgres,
                                args.timeout)
                runs.setdefault((backend, processes), []).append(run)
        print(f"  round {round_ + 1} of {args.rounds} done", flush=True)
    print(f"  {'outbox':<11}{'shims':>6}{'deliverers':>15}{'accepted':>20}{'delivered':>20}"
          "   (each round's delivered events/s)")
    for backend in BACKENDS:
        for processes in SCALE_PROCESSES:
            found = runs[(backend, processes)]
            accepted = statistics.median(r.accepted_per_s for r in found)
            delivered = [r.delivered_per_s for r in found if r.delivered_per_s is not None]
            shown = f"{statistics.median(delivered):>11,.0f} events/s" if len(delivered) == len(found) \
                else f"{'n/a (--timeout)':>20}"
            deliverers = str(processes) if backend == "postgresql" else "1 (its limit)"
            rounds = ", ".join("n/a" if r.delivered_per_s is None else f"{r.delivered_per_s:,.0f}"
                               for r in found)
            print(f"  {backend:<11}{processes:>6}{deliverers:>15}{accepted:>11,.0f} events/s{shown}"
                  f"   ({rounds})", flush=True)


def _kill_all() -> None:
    for process in STARTED:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="end-to-end run (default 10,000)")
    parser.add_argument("--small", type=int, default=1_000, help="small backlog (default 1,000)")
    parser.add_argument("--large", type=int, default=100_000, help="large backlog (default 100,000)")
    parser.add_argument("--skip-large", action="store_true", help="no large backlog, for a quick look")
    parser.add_argument("--floor-requests", type=int, default=20_000,
                        help="requests the raw client sends (default 20,000)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds any one wait may take before it reports what it has (1,800)")
    parser.add_argument("--scale", action="store_true",
                        help="instead: 1, 2 and 4 shims and delivery processes on one outbox, "
                             "SQLite and PostgreSQL (a throwaway server, as Debian ships it)")
    parser.add_argument("--scale-events", type=int, default=4_000,
                        help="events per --scale run (default 4,000)")
    parser.add_argument("--rounds", type=int, default=3, help="--scale rounds (default 3)")
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        run_receiver()
        return
    # SIGTERM (from make, a CI runner) unwinds like Ctrl-C, so every process gets killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with contextlib.ExitStack() as cleanup:  # unwound last in, first out
            work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-delivery-")))
            cleanup.callback(_kill_all)
            receiver = Receiver()
            cleanup.callback(receiver.close)
            if args.scale:
                from tests.support.postgres import PostgresServer

                postgres = PostgresServer(durable=True)
                cleanup.callback(postgres.stop)
                scale_report(args, receiver, work, postgres)
            else:
                report(args, receiver, work)
    except KeyboardInterrupt:
        sys.exit("interrupted")


def report(args: argparse.Namespace, receiver: Receiver, work: Path) -> None:
    pool = mapped_requests(receiver.port, 2000)  # the floor's requests; 2,000 = 400 cycles of 5
    per_event = len(pool) / 2000
    print(f"{args.events:,} events (~{per_event:.1f} requests each when mapped), batches of {BATCH}, "
          f"delivery concurrency {CONCURRENCY}, one machine ({os.cpu_count()} cores)", flush=True)

    e2e = end_to_end(args.events, receiver, work, args.timeout)
    accepted_rate = e2e.accepted / e2e.accepted_seconds if e2e.accepted_seconds > 0 else None
    print(f"  {'accepted (shim, stored durably)':<36}{_n(accepted_rate, 'events/s')}", flush=True)
    print(_rate_line("delivered end to end", e2e.delivered), flush=True)
    print(_ratio("delivered / accepted", e2e.delivered, accepted_rate, 0.5), flush=True)

    sizes = {"small": args.small} | ({} if args.skip_large else {"large": args.large})
    backlogs: dict[str, Run] = {}
    for name, size in sizes.items():
        backlogs[name] = backlog(name, size, receiver, work, args.timeout)
        print(_rate_line(f"backlog {size:>8,}: delivery", backlogs[name]), flush=True)
    if len(backlogs) == 2:
        print(_ratio("large / small backlog", backlogs["large"], backlogs["small"], 0.8), flush=True)
    delivers = [f"deliver ({sizes[name]:,}) {_megabytes(run.peaks_mb)}" for name, run in backlogs.items()]
    print(f"  peak RSS: shim {_megabytes(e2e.delivered.peaks_mb)}, {', '.join(delivers)}", flush=True)

    raw = floor(receiver, pool, args.floor_requests, args.timeout)
    raw_rate = raw.requests_per_s
    print(f"  {f'raw asyncio client floor ({CONCURRENCY} conn.)':<36}{_n(raw_rate, 'requests/s')}"
          f"  (~{(raw_rate or 0) / per_event:,.0f} events/s)"
          + ("" if raw.complete else f"   (partial: --timeout, {raw.requests:,} sent)"), flush=True)

    print("  receiver against outbox:")
    print(_check_line("end to end", e2e.delivered))
    for name, run in backlogs.items():
        print(_check_line(f"backlog {sizes[name]:,}", run))
    if raw.complete and raw.items != args.floor_requests:
        print(f"    floor: receiver got {raw.items:,} of {args.floor_requests:,}  (MISMATCH)")


if __name__ == "__main__":
    main()
