"""SIGKILL a delivering process and restart it: nothing accepted is lost (on each outbox
backend)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.config import load_config
from engine.delivery import SQLiteOutbox

from tests.support.paths import ROOT
from tests.support.delivery import accept, identify, open_outbox, write_config
from tests.support.scripted_server import Reply, ScriptedServer

COUNT = 60


def test_sigkill_while_delivering_loses_nothing(store: str, tmp_path: Path) -> None:
    with ScriptedServer() as server:
        # A third are answered at once; then two answers hang, holding both delivery slots,
        # so that the kill lands while requests are in flight whatever the machine's load.
        server.script("/calixa", *[Reply(200)] * (COUNT // 3), *[Reply(200, delay=2)] * 2, Reply(200))
        path = write_config(tmp_path, server.url(), delivery={"timeout": 2, "concurrency": 2},
                            store=store)
        config = load_config(path)
        outbox = open_outbox(config.store)
        accept(config, outbox, *[identify(i) for i in range(COUNT)])
        outbox.close()

        command = [sys.executable, "-m", "engine", "deliver", "--config", str(path)]
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) as first:
            server.wait_for("/calixa", COUNT // 3 + 1, timeout=30)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        delivered_before = len(server.at("/calixa"))
        assert 0 < delivered_before < COUNT, "the kill must land mid-delivery"

        # The restart picks up what was pending, and what was in flight once its lease ends.
        restarted = subprocess.run(command[:-2] + ["--config", str(path), "--until-idle"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert restarted.returncode == 0, restarted.stderr

        received = {json.loads(r.body)["messageId"] for r in server.at("/calixa")}
        assert received == {f"m{i}" for i in range(COUNT)}  # at least once, every one
        assert open_outbox(config.store).counts() == {"delivered": COUNT}


def test_one_delivering_process_per_outbox(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        path = write_config(tmp_path, server.url())
        config = load_config(path)
        holder = SQLiteOutbox(config.store)
        holder.claim_delivery()
        try:
            result = subprocess.run([sys.executable, "-m", "engine", "deliver", "--config", str(path)],
                                    cwd=ROOT, capture_output=True, text=True, timeout=60)
        finally:
            holder.close()
        assert result.returncode == 2
        assert result.stderr.strip().endswith(f"error: another process is delivering {config.store}")
