"""Property-based attack on configuration files: the shipped development configuration,
mutated as a careless or hostile operator might, through load_config and `engine validate
--config`.

For any file: a Config, or a ConfigError whose every problem is `file:line:col: message`;
never another exception, a traceback, or a secret of the file in what is printed. A few
cases in `make test`, many more in `make fuzz`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given

from engine.cli import main
from engine.config import load_config
from engine.errors import ConfigError
from tests.support.fuzz import mutations, share
from tests.support.paths import MAPPINGS

_LOCATED = re.compile(r"^\S+:\d+:\d+: \S")
SECRET = "sk-fuzz-5f3c9a8b7d6e5f4a"

# The development configuration, with one small destination of its own (loading every
# shipped mapping for each case would take most of the time).
CONFIG = f"""\
mappings: mappings
store: outbox.sqlite3
dry_run: true
delivery: {{timeout: 10, backoff_initial: 1, backoff_max: 300, max_attempts: 25, max_age: 14400, concurrency: 8}}
sources:
  - name: demo
    write_key: ${{FUZZ_WRITE_KEY:-demo-write-key}}
    webhook_secret: "{SECRET}"
    destinations:
      calixa: {{api_key: "{SECRET}", endpoint: "https://calixa.example/segment"}}
  - name: other
    write_key: other-key
    destinations: {{calixa: {{api_key: k2, endpoint: "https://calixa.example/x"}}}}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz-config")
    (directory / "mappings").mkdir()
    for name in ("calixa.yaml", "_segment-partner.yaml"):
        shutil.copy(MAPPINGS / name, directory / "mappings" / name)
    return directory


def test_the_configuration_fuzzed_is_valid(home: Path) -> None:
    (home / "config.yaml").write_text(CONFIG)
    load_config(home / "config.yaml", env={})


@share(0.25)
@given(text=mutations(CONFIG))
def test_mutated_configurations_load_or_say_where_they_are_wrong(home: Path, text: str) -> None:
    path = home / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path, env={})
    except ConfigError as exc:
        for problem in exc.problems:
            assert _LOCATED.match(str(problem)), problem
            assert SECRET not in str(problem), problem


@share(0.15)
@given(text=mutations(CONFIG))
def test_validate_config_exits_with_problems_never_a_traceback(
        home: Path, text: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = home / "validated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    monkeypatch.delenv("FUZZ_WRITE_KEY", raising=False)
    code = main(["validate", "--config", str(path), str(home / "mappings")])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in out + err
    assert SECRET not in out + err
