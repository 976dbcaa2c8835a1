"""The command itself: installed as `engine`, --version, help for every option, examples,
and options from the environment."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from engine.cli import _parser
from tests.support.cli import run
from tests.support.delivery import write_config
from tests.support.paths import ROOT


def test_pip_install_gives_an_engine_command() -> None:
    command = Path(sys.executable).parent / "engine"
    result = subprocess.run([str(command), "--version"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("engine ")


def test_every_option_of_every_command_has_help_and_the_top_level_shows_examples() -> None:
    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [f"{name} {action.option_strings or action.dest}"
               for name, command in commands.choices.items() for action in command._actions
               if not action.help and not isinstance(action, argparse._HelpAction)]
    assert missing == []
    top = run("--help").stdout
    assert "examples:" in top and "engine serve --config" in top and "ENGINE_PORT" in top


def test_options_come_from_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    env = {**os.environ, "ENGINE_CONFIG": str(config)}
    listed = subprocess.run([sys.executable, "-m", "engine", "dead-letters", "list"], env=env,
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (listed.returncode, listed.stdout) == (0, "")
    bad = subprocess.run([sys.executable, "-m", "engine", "serve"],
                         env={**env, "ENGINE_PORT": "eighty"}, capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "invalid int value: 'eighty'" in bad.stderr


def test_outside_the_repository_the_shipped_mappings_are_used(tmp_path: Path) -> None:
    def engine_in(directory: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args], input=stdin, text=True,
                              capture_output=True, cwd=directory, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert engine_in(tmp_path, "validate").stderr.startswith("ok: ")
    mapped = engine_in(tmp_path, "map", "--destination", "skalin", "--setting", "api_key=k-123456",
                       "--setting", "client_id=c1", stdin='{"type":"page","userId":"u","name":"Home"}')
    assert mapped.returncode == 0 and '"rule":"feature"' in mapped.stdout
    missing = engine_in(tmp_path, "map", "--destination", "skalin", "--mappings", "nowhere")
    assert (missing.returncode, missing.stderr) == (
        2, "error: no mappings at nowhere (run from the directory that holds them, or pass --mappings DIR)\n")
    config = tmp_path / "deploy.yaml"  # no `mappings:`, and none beside it: the shipped ones
    config.write_text("sources: [{name: web, write_key: wk-1, destinations: {skalin: "
                      "{api_key: k-123456, client_id: c1}}}]\n")
    assert engine_in(tmp_path, "validate", "--config", str(config)).returncode == 0
