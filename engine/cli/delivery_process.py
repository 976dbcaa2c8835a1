"""The delivery process that `engine serve` runs beside its intake, on the other core.

It is `python -m engine deliver` as a child process, with two pipes: the shim writes a byte
to the first after each commit of new jobs (a wake-up, instead of the child polling), and
the child writes its metrics to the second, which the shim adds to its own /metrics. If the
child dies, it is started again; if the shim dies, even by SIGKILL, the child dies with it
(its jobs are leased, and the next delivering process sends them again: at least once).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import orjson

from ..metrics import Metrics

__all__ = ["DeliveryProcess"]

log = logging.getLogger("engine.serve")

RESTART_DELAY = 1.0
"""Seconds before a delivery process that died is started again. One that dies again soon
after its start (an outbox it cannot open, say) waits twice as long each time, up to
RESTART_DELAY_MAX: it is not started again in a tight loop."""
RESTART_DELAY_MAX = 60.0
SHORT_RUN = 30.0
"""Seconds a delivery process must have run for its death to count as a new failure."""
STOP_TIMEOUT = 40.0
"""Seconds a stopping delivery process gets to finish what it has in flight."""

class DeliveryProcess:
    """Runs and supervises `engine deliver --config CONFIG` for a shim."""

    def __init__(self, config_path: str, metrics: Metrics, log_args: tuple[str, ...] = ()) -> None:
        self.config_path = config_path
        self.metrics = metrics
        self.log_args = log_args
        self._process: subprocess.Popen[bytes] | None = None
        self._wake_w = -1
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._supervisor: threading.Thread | None = None

    def start(self) -> None:
        """Start the child, and a thread that restarts it if it dies."""
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="delivery-supervisor",
                                            daemon=True)
        self._supervisor.start()

    def _spawn(self) -> None:
        wake_r, wake_w = os.pipe()
        report_r, report_w = os.pipe()
        command = [sys.executable, "-m", "engine", "deliver", "--config", self.config_path,
                   "--wake-fd", str(wake_r), "--report-fd", str(report_w), *self.log_args]
        # Its metrics go to the shim's /metrics: a port of its own is for `deliver` run apart.
        env = {k: v for k, v in os.environ.items() if k not in ("ENGINE_METRICS_PORT", "ENGINE_METRICS_HOST")}
        process = subprocess.Popen(command, pass_fds=(wake_r, report_w), env=env)
        os.close(wake_r)
        os.close(report_w)
        os.set_blocking(wake_w, False)
        with self._lock:
            old_wake, self._wake_w = self._wake_w, wake_w
            self._process = process
            self._generation += 1
            peer = f"delivery-{self._generation}"
            if old_wake != -1:
                os.close(old_wake)
        threading.Thread(target=self._read_reports, args=(report_r, peer), daemon=True,
                         name=f"{peer}-metrics").start()
        log.info("delivery process %d started (outbox delivered beside this intake)", process.pid)

    def _read_reports(self, fd: int, peer: str) -> None:
        with os.fdopen(fd, "rb") as reports:
            for line in reports:
                try:
                    self.metrics.absorb(peer, orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        self.metrics.retire(peer)

    def _supervise(self) -> None:
        delay = RESTART_DELAY / 2  # doubled at the first death
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            if code == 0:  # it stopped on purpose (Ctrl-C reaches the whole process group)
                log.info("delivery process %d stopped", process.pid)
                return
            if code == 2:  # its configuration or the outbox's lock: it would fail again
                log.error("delivery process %d could not start (see its message above); "
                          "this shim accepts and stores, and nothing delivers", process.pid)
                return
            delay = delay * 2 if time.monotonic() - started < SHORT_RUN else RESTART_DELAY
            delay = min(delay, RESTART_DELAY_MAX)
            log.error("delivery process %d exited with %s; starting another in %gs",
                      process.pid, code, delay)
            if self._stopping.wait(delay):
                return
            self._spawn()

    @property
    def running(self) -> bool:
        """Whether a delivery process runs now."""
        with self._lock:
            return self._process is not None and self._process.poll() is None

    def wake(self) -> None:
        """New jobs are committed: have the child look now. Never blocks; a wake-up already
        waiting in the pipe is as good as another."""
        with self._lock:  # the supervisor may be swapping the pipe for a new child's
            if self._wake_w == -1:
                return
            try:
                os.write(self._wake_w, b"!")
            except OSError:  # full (a wake-up is waiting already), or the child is gone
                pass

    def kill(self) -> None:
        """Stop the child now, in-flight requests and all (they are sent again later)."""
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def stop(self) -> None:
        """Let the child finish what it has in flight (SIGTERM), then wait for it."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.error("delivery process %d did not stop in %gs; killed (its leased jobs "
                          "are sent again by the next one)", process.pid, STOP_TIMEOUT)
                process.kill()
                process.wait()
        with self._lock:
            if self._wake_w != -1:
                os.close(self._wake_w)
                self._wake_w = -1
        log.info("delivery process %d stopped", process.pid)
