"""Run the real command line, `python -m engine ...`, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .paths import ROOT


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], input=stdin, text=True,
                          capture_output=True, cwd=ROOT, timeout=60)


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]
