"""The shim as its own process: a SIGKILL loses nothing it acknowledged; SIGTERM drains."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from tests.support.paths import ROOT
from tests.support.scripted_server import Reply, ScriptedServer
from tests.support.shim import WRITE_KEY, shim_config, wait_for

COUNT = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def start(config: Path, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`engine serve` running; stopped when the block ends, whatever happened in it (a
    failing test must fail, not wait forever on a shim it never stopped)."""
    process = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--config", str(config),
                                "--port", str(port), *extra], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _up(port) or process.poll() is not None, timeout=30)
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def send_batch(port: int) -> None:
    batch = {"batch": [{"type": "track", "userId": f"u{i}", "event": "Signed Up", "messageId": f"k{i}"}
                       for i in range(COUNT)]}
    reply = httpx.post(f"http://127.0.0.1:{port}/v1/batch", json=batch, auth=(WRITE_KEY, ""), timeout=30)
    assert reply.json() == {"success": True}  # acknowledged: the shim now owes all of them


def delivered_ids(server: ScriptedServer) -> set[str]:
    return {json.loads(r.body)["messageId"] for r in server.at("/calixa")}


def test_sigkill_after_acknowledging_loses_nothing(tmp_path: Path) -> None:
    with ScriptedServer() as destinations:
        # The first answers hang, holding every delivery slot, so that the kill lands while
        # requests are in flight whatever the machine's load; the rest are answered at once.
        destinations.script("/calixa", *[Reply(200, delay=2)] * 4, Reply(200))
        config = shim_config(tmp_path, destinations.url())
        port = free_port()
        with start(config, port) as shim:
            send_batch(port)
            destinations.wait_for("/calixa", 2)
            os.kill(shim.pid, signal.SIGKILL)
            shim.wait(timeout=10)
        assert len(delivered_ids(destinations)) < COUNT, "the kill must land mid-delivery"
        restarted = subprocess.run([sys.executable, "-m", "engine", "deliver", "--config", str(config),
                                    "--until-idle"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert restarted.returncode == 0, restarted.stderr
        assert delivered_ids(destinations) == {f"k{i}" for i in range(COUNT)}


def test_sigterm_drains_gracefully(tmp_path: Path) -> None:
    with ScriptedServer() as destinations:
        destinations.script("/calixa", Reply(200, delay=0.1))
        config = shim_config(tmp_path, destinations.url())
        port = free_port()
        with start(config, port) as shim:
            send_batch(port)
            destinations.wait_for("/calixa", 1)
            shim.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            assert shim.wait(timeout=30) in (0, -signal.SIGTERM)
            stderr = shim.stderr.read().decode()  # type: ignore[union-attr]
        assert "Application shutdown complete" in stderr
        assert "Traceback" not in stderr
        # What was in flight finished; what was not started is still stored, and the next
        # process sends it.
        subprocess.run([sys.executable, "-m", "engine", "deliver", "--config", str(config), "--until-idle"],
                       cwd=ROOT, check=True, capture_output=True, timeout=120)
        assert delivered_ids(destinations) == {f"k{i}" for i in range(COUNT)}
        assert len(destinations.at("/calixa")) == COUNT  # a clean stop sends nothing twice


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def metric(port: int, line: str) -> bool:
    return line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_serve_delivers_in_a_second_process_restarted_if_it_dies(tmp_path: Path) -> None:
    with ScriptedServer() as destinations:
        config = shim_config(tmp_path, destinations.url())
        port = free_port()
        with start(config, port) as shim:
            assert httpx.get(f"http://127.0.0.1:{port}/health").json()["delivering"] is True
            (first,) = children(shim.pid)
            send_batch(port)
            destinations.wait_for("/calixa", COUNT)
            # Its figures reach the shim's own /metrics.
            wait_for(lambda: metric(port, f'engine_requests_delivered_total{{destination="calixa"}} {COUNT}'))
            # And its process's own figures, in the same scrape as the shim's.
            scrape = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert "engine_delivery_process_cpu_seconds_total" in scrape and "process_cpu_seconds_total" in scrape
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: children(shim.pid) not in ([], [first]))
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/track", auth=(WRITE_KEY, ""),
                               json={"userId": "u1", "event": "Signed Up", "messageId": "after"})
            assert reply.json() == {"success": True}
            destinations.wait_for("/calixa", COUNT + 1)
            # Counters never go down across the restart.
            wait_for(lambda: metric(port, f'engine_requests_delivered_total{{destination="calixa"}} {COUNT + 1}'))
            shim.send_signal(signal.SIGTERM)
            assert shim.wait(timeout=30) == 0
            stderr = shim.stderr.read().decode()  # type: ignore[union-attr]
        assert f"delivery process {first} exited with -9; starting another" in stderr
        assert "Traceback" not in stderr


def test_dry_run_records_and_the_cli_shows_them(tmp_path: Path) -> None:
    with ScriptedServer() as destinations:
        config = shim_config(tmp_path, destinations.url(), dry_run=True)
        port = free_port()
        with start(config, port) as shim:
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/identify", auth=(WRITE_KEY, ""),
                               json={"userId": "u1", "traits": {"email": "a@example.com"}})
            assert reply.json() == {"success": True}
            shown = httpx.get(f"http://127.0.0.1:{port}/v1/recorded", auth=(WRITE_KEY, "")).json()
            shim.send_signal(signal.SIGTERM)
            shim.wait(timeout=30)
        assert shown["dry_run"] is True
        assert sorted(r["destination"] for r in shown["recorded"]) == ["calixa", "callexa", "skalin"]
        assert destinations.received == []  # nothing was sent
        result = subprocess.run([sys.executable, "-m", "engine", "recorded", "--config", str(config)],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert sorted(line["destination"] for line in lines) == ["calixa", "callexa", "skalin"]
        assert all(line["source"] == "web" for line in lines)


def test_serve_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("delivery: {timeout: nope}\n")
    result = subprocess.run([sys.executable, "-m", "engine", "serve", "--config", str(config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"error: invalid configuration:\n{config}:1:21: 'timeout': must be of number type\n"


def test_serve_refuses_clearly_when_another_process_delivers(tmp_path: Path) -> None:
    from engine.config import load_config
    from engine.delivery import SQLiteOutbox as Outbox

    with ScriptedServer() as destinations:
        config = shim_config(tmp_path, destinations.url())
        holder = Outbox(load_config(config).store)
        holder.claim_delivery()
        try:
            result = subprocess.run([sys.executable, "-m", "engine", "serve", "--config", str(config),
                                     "--port", str(free_port())], cwd=ROOT, capture_output=True,
                                    text=True, timeout=60)
        finally:
            holder.close()
    assert result.returncode == 2
    assert result.stderr.strip().endswith("; stop it, or serve with --no-deliver")


def test_json_logs_one_line_per_rejected_event_and_unsigned_intakes_warned(tmp_path: Path) -> None:
    with ScriptedServer() as destinations:
        config = shim_config(tmp_path, destinations.url())
        port = free_port()
        with start(config, port, "--log-format", "json") as shim:
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/track", auth=(WRITE_KEY, ""),
                               json={"userId": "u1", "messageId": "bad-1"})
            assert reply.status_code == 400
            shim.send_signal(signal.SIGTERM)
            shim.wait(timeout=30)
            lines = [json.loads(line) for line in shim.stderr.read().decode().splitlines()]  # type: ignore[union-attr]
    by_logger = {}
    for line in lines:
        assert set(line) >= {"time", "level", "logger", "message"}
        by_logger.setdefault(line["logger"], []).append(line["message"])
    assert "source web: event bad-1 rejected: a track event needs 'event'" in by_logger["engine.intake"]
    assert any("/v1/track" in m and "400" in m for m in by_logger["uvicorn.access"])
    warnings = by_logger["engine.serve"]
    assert "POST /inbound/callexa-sync-back is not signed: set its secret to require X-Signature" in warnings
    assert "POST /webhook/open-hooks is not signed: set webhook_secret to require X-Signature" in warnings


def test_deliver_run_apart_serves_its_own_metrics(tmp_path: Path) -> None:
    from engine.config import load_config
    from tests.support.delivery import accept, identify, open_outbox, write_config

    with ScriptedServer() as destinations:
        path = write_config(tmp_path, destinations.url())
        config = load_config(path)
        accept(config, open_outbox(config.store), identify(1), identify(2))
        port = free_port()
        with subprocess.Popen([sys.executable, "-m", "engine", "deliver", "--config", str(path),
                               "--metrics-port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) as process:
            try:
                destinations.wait_for("/calixa", 2)
                wait_for(lambda: 'engine_requests_delivered_total{destination="calixa"} 2.0'
                         in _metrics_at(port))
                scrape = _metrics_at(port)
                assert 'engine_outbox_jobs{status="delivered"} 2.0' in scrape
                assert "process_resident_memory_bytes" in scrape
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


def _metrics_at(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""
