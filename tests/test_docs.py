"""The documentation's examples work as the documentation says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import engine

from tests.support.paths import ROOT
from tests.support.cli import run


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL)


def test_the_worked_example_loads_and_maps_as_described(tmp_path: Path) -> None:
    worked = yaml_blocks(ROOT / "docs" / "mapping-format.md")[0]
    (tmp_path / "skalin.yaml").write_text(worked)
    (destination,) = engine.load(tmp_path / "skalin.yaml").values()
    (example,) = destination.examples
    (request,) = destination.map(example.event, settings=example.settings, now=example.now)
    assert request.form == {"client_id": "demo", "event_id": request.form["event_id"], "action": "ev",
                            "event": '{"name":"myFeature","event_name":"feature"}'}
    # "... prints one line: the request, with Authorization shown as [redacted]."
    result = run("map", "--mappings", str(tmp_path), "--destination", "skalin",
                 "--setting", "api_key=demo-key", "--setting", "client_id=demo",
                 stdin='{"type": "track", "event": "myFeature", "userId": "u1", "messageId": "m1"}')
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["request"]["headers"]["Authorization"] == "[redacted]"


def test_the_dev_config_is_valid() -> None:
    from engine.config import load_config

    config = load_config(ROOT / "docs" / "dev-config.yaml", env={})
    assert config.dry_run is True
    assert set(config.source("demo").destinations) == {"calixa", "callexa", "skalin"}  # type: ignore[union-attr]
