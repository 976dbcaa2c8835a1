"""Property-based attack on `engine map`: any lines a file of events may hold, mapped in
process (engine.cli.main) by each shipped destination.

For any lines: exit 0, no traceback, and one outcome (or more) for every line that is not
blank, in order: a line that cannot be read or mapped is an error outcome of its own, and
the lines after it are mapped. A few cases in `make test`, many more in `make fuzz`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.cli import main
from tests.support.fuzz import lines, messages, share
from tests.support.paths import MAPPINGS

DESTINATIONS = {slug: d for slug, d in engine.load(MAPPINGS).items()
                if d.examples and d.input == "segment"}
# Each case loads its destination's file: `make test` takes the smaller ones.
SLUGS = sorted(DESTINATIONS) if settings.default.max_examples >= 1000 else \
    ["calixa", "callexa", "posthog", "skalin"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """For each destination, a directory with its file (and the base files), and its
    first example's settings."""
    directory = tmp_path_factory.mktemp("fuzz-cli")
    for slug, destination in DESTINATIONS.items():
        (directory / slug).mkdir()
        shutil.copy(destination.file, directory / slug)
        for base in MAPPINGS.glob("_*.yaml"):
            shutil.copy(base, directory / slug)
        (directory / f"{slug}.json").write_text(json.dumps(destination.examples[0].settings))
    return directory


@share(0.25)
@given(slug=st.sampled_from(SLUGS),
       first=messages.filter(lambda m: isinstance(m, dict)).map(json.dumps),
       rest=st.lists(lines(), max_size=8))
def test_map_answers_for_every_line(home: Path, slug: str, first: str, rest: list[str],
                                    capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    events = home / "events.ndjson"
    events.write_text("\n".join([first, *rest]) + "\n", encoding="utf-8", errors="surrogatepass")
    code = main(["map", "--mappings", str(home / slug), "--destination", slug,
                 "--settings", str(home / f"{slug}.json"), "--now", "2024-05-06T12:00:00Z",
                 str(events)])
    out, err = capsysbinary.readouterr()
    assert code == 0, err.decode(errors="replace")
    assert b"Traceback" not in err
    answered = [json.loads(line)["event"] for line in out.splitlines()]
    expected = len([line for line in [first, *rest] if line.strip()])
    assert sorted(set(answered)) == list(range(1, expected + 1)), (answered, expected)
