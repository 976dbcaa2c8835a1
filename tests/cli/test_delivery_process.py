"""The delivery process `serve` runs beside its intake: started, woken, stopped; restarted
after a crash only (not after a clean stop, nor when it could not start at all)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from engine.cli.delivery_process import DeliveryProcess
from engine.metrics import Metrics
from tests.support.delivery import write_config
from tests.support.storage import corrupt


def wait_until(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_one_that_cannot_start_is_not_restarted_over_and_over(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", extra="dry_run: true\n")
    process = DeliveryProcess(str(config), Metrics())
    process.start()
    try:
        assert process._supervisor is not None
        process._supervisor.join(timeout=20)  # it gave up, rather than sleep and restart
        assert not process._supervisor.is_alive() and not process.running
        assert "could not start" in caplog.text and "starting another" not in caplog.text
    finally:
        process.stop()


def test_one_that_keeps_dying_is_restarted_ever_less_often(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("engine.cli.delivery_process.RESTART_DELAY", 0.05)
    config = write_config(tmp_path, "http://127.0.0.1:9")
    corrupt(tmp_path / "outbox.sqlite3")  # each one exits at once: the outbox cannot be opened
    process = DeliveryProcess(str(config), Metrics())
    process.start()
    try:
        # Each one loads every mapping before it fails: slow on a busy machine.
        wait_until(lambda: caplog.text.count("starting another") >= 3, timeout=180)
    finally:
        process.stop()
    delays = [r.getMessage().rsplit(" ", 1)[1] for r in caplog.records if "starting another" in r.getMessage()]
    assert delays[:3] == ["0.05s", "0.1s", "0.2s"]


def test_it_is_woken_and_stops_cleanly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = write_config(tmp_path, "http://127.0.0.1:9")
    process = DeliveryProcess(str(config), Metrics())
    process.start()
    try:
        wait_until(lambda: process.running)
        process.wake()  # never blocks, whatever the child is doing
        process.wake()
    finally:
        process.stop()
    assert not process.running
    assert "exited with" not in caplog.text
