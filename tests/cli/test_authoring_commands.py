"""The commands for destination authors, run in process through the command line's main():
`engine test` (and its --update), `engine init`, `engine describe`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

import engine as engine_module
from engine.cli import main
from engine.mapping.json_schema import SHIPPED, json_schema
from tests.support.cli import run
from tests.support.paths import MAPPINGS, ROOT


def engine(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment's own directory: mappings/ with Calixa and the base it extends."""
    (tmp_path / "mappings").mkdir()
    for name in ("calixa.yaml", "_segment-partner.yaml"):
        shutil.copy(MAPPINGS / name, tmp_path / "mappings" / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    return tmp_path


def test_every_shipped_example_passes_as_a_real_process() -> None:
    result = run("test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("ok: ") and " passed" in result.stderr


def test_new_examples_fail_until_update_writes_their_snapshots(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = engine(capsys, "test")
    assert code == 1
    assert out.startswith("mappings/calixa.yaml:")
    assert "no snapshot yet (snapshots/examples/calixa/" in out and "engine test --update" in out
    assert err == "21 examples of 1 destination: 0 passed, 21 failed\n"
    code, out, err = engine(capsys, "test", "--update")
    assert code == 0
    assert out.splitlines()[0].startswith("wrote snapshots/examples/calixa/")
    assert err == "ok: 21 examples of 1 destination: 21 passed, 21 snapshots written\n"
    written = sorted(p.name for p in (project / "snapshots/examples/calixa").iterdir())
    assert written == sorted(p.name for p in (ROOT / "snapshots/examples/calixa").iterdir())
    for name in written:  # what the repository's snapshots hold, byte for byte
        assert (project / "snapshots/examples/calixa" / name).read_bytes() == \
            (ROOT / "snapshots/examples/calixa" / name).read_bytes()
    assert engine(capsys, "test") == (0, "", "ok: 21 examples of 1 destination: 21 passed\n")


def test_a_changed_mapping_fails_with_a_located_diff_and_orphans_are_named(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert engine(capsys, "test", "--update")[0] == 0
    mapping = project / "mappings" / "calixa.yaml"
    calixa = mapping.read_text()
    line = calixa[:calixa.index("- name: \"Skip: a track event outside")].count("\n") + 1
    mapping.write_text(calixa.replace("Skip: page calls are not accepted", "Skip: pages are not accepted")
                       .replace("'{{ event }}' is not one of them", "'{{ event }}' is not one"))
    code, out, err = engine(capsys, "test", "mappings/calixa.yaml")
    assert code == 1
    assert f"mappings/calixa.yaml:{line}:5: example 'Skip: a track event outside the B2B spec' " \
           "(calixa) fails\n  it differs from its snapshot (snapshots/examples/calixa/" \
           "skip-a-track-event-outside-the-b2b-spec.json):\n" in out
    assert "'Order Completed' is not one of them\"\n  +" in out
    assert "snapshots/examples/calixa/skip-page-calls-are-not-accepted.json: a snapshot of no example" in out
    assert "no snapshot yet (snapshots/examples/calixa/skip-pages-are-not-accepted.json)" in out
    assert err == "21 examples of 1 destination: 18 passed, 3 failed, 1 snapshot of no example\n"
    code, out, _ = engine(capsys, "test", "--update", "mappings/calixa.yaml")
    assert code == 0
    assert "removed snapshots/examples/calixa/skip-page-calls-are-not-accepted.json (no example has it)" in out
    assert engine(capsys, "test")[0] == 0


def test_a_folder_of_no_destination_is_an_orphan_when_a_directory_is_tested(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine(capsys, "test", "--update")
    stray = project / "snapshots/examples/gone/old.json"
    stray.parent.mkdir()
    stray.write_text("{}\n")
    assert engine(capsys, "test", "mappings/calixa.yaml")[0] == 0  # one file: its own folder only
    code, out, _ = engine(capsys, "test", "mappings")
    assert code == 1 and "snapshots/examples/gone/old.json: a snapshot of no example" in out


def test_expect_failures_stay_failures_after_update(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = project / "mappings" / "calixa.yaml"
    text = mapping.read_text()
    marker = "      - skipped: Calixa does not accept page calls"
    assert marker in text
    mapping.write_text(text.replace(marker, "      - skipped: something else\n" + marker))
    code, out, _ = engine(capsys, "test", "--update")
    assert code == 1
    assert "example 'Skip: page calls are not accepted' (calixa) fails" in out
    assert "it gives 1 outcome and expect: says 2:" in out
    assert '-    "skipped": "something else"' in out


def test_update_is_refused_in_ci(project: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    code, out, err = engine(capsys, "test", "--update")
    assert (code, out) == (2, "")
    assert err == "error: --update writes snapshots; it is refused where CI is set\n"
    assert not (project / "snapshots").exists()


def test_ci_never_updates_snapshots() -> None:
    for path in (ROOT / "Makefile", ROOT / ".ci" / "run"):
        text = path.read_text()
        assert "--update" not in text and "--snapshot-update" not in text, path


def test_invalid_mappings_are_reported_and_nothing_runs(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "mappings" / "bad.yaml").write_text("destination: Bad\nslug: bad\nrules: [{name: a, skip: '{{ x | nope }}'}]\n")
    code, out, err = engine(capsys, "test")
    assert code == 1
    assert out == "mappings/bad.yaml:3:26: template error: No filter named 'nope'.\n"
    assert err == "1 problem found; no example was run\n"


def test_init_writes_a_starter_that_passes_validate_and_test(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = engine(capsys, "init", "acme-crm", "--name", 'Acme: "CRM"')
    assert code == 0
    assert out.splitlines() == [
        "wrote mappings/acme-crm.yaml",
        "wrote snapshots/examples/acme-crm/track-analytics-track-signed-up-plan-pro.json"]
    assert "docs/authoring.md" in err
    text = (project / "mappings" / "acme-crm.yaml").read_text()
    assert text.startswith(f"# yaml-language-server: $schema={SHIPPED.resolve().as_uri()}\n")
    assert jsonschema.Draft7Validator(json_schema()).is_valid(yaml.safe_load(text))
    destination = engine_module.load(project / "mappings")["acme-crm"]
    assert destination.name == 'Acme: "CRM"'
    assert [len(d.rules) for d in [destination]] == [1] and destination.examples[0].expect
    assert list(destination.settings_schema.spec) == ["api_key", "endpoint"]
    assert engine(capsys, "validate", "mappings")[0] == 0
    assert engine(capsys, "test", "mappings/acme-crm.yaml") == \
        (0, "", "ok: 1 example of 1 destination: 1 passed\n")


def test_init_names_the_schema_beside_a_checkout(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "docs").mkdir()
    (project / "docs" / "mapping.schema.json").write_text("{}")
    assert engine(capsys, "init", "acme")[0] == 0
    first = (project / "mappings" / "acme.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../docs/mapping.schema.json"


@pytest.mark.parametrize(("argv", "message"), [
    (["init", "Acme CRM"], "error: a slug is lowercase letters, digits and '-' (like acme-crm), got 'Acme CRM'\n"),
    (["init", "calixa"], "error: mappings/calixa.yaml already exists\n"),
    (["init", "other", "--mappings", "elsewhere"], None),
])
def test_init_refuses_what_would_clash(project: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                       message: str | None) -> None:
    if message is None:  # a slug used by a file of another name in the same directory
        (project / "elsewhere").mkdir()
        shutil.copy(project / "mappings" / "calixa.yaml", project / "elsewhere" / "other-name.yaml")
        shutil.copy(project / "mappings" / "_segment-partner.yaml", project / "elsewhere")
        text = (project / "elsewhere" / "other-name.yaml").read_text().replace("slug: calixa", "slug: other")
        (project / "elsewhere" / "other-name.yaml").write_text(text)
        message = "error: slug 'other' is already used by elsewhere/other-name.yaml\n"
    assert engine(capsys, *argv) == (2, "", message)


def test_describe_says_what_people_configure(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = engine(capsys, "describe", "calixa", "--mappings", str(MAPPINGS))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Calixa (calixa): ") and lines[0].endswith("mappings/calixa.yaml")
    assert "accepts: group, identify, track" in lines
    assert "  api_key: string, required, secret" in lines
    assert "  endpoint: string, required" in lines
    assert any(line.startswith("  b2b-track: track calls, named Signed Up, Account Created,") for line in lines)
    assert "(in any case, with any separators); 1 request" in out
    assert "  other-track: track calls; skips, saying why" in lines
    assert lines[-1].startswith("21 examples: `engine test ")


def test_describe_never_shows_a_secret_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.yaml").write_text("""\
destination: Demo
slug: demo
settings:
  token: {type: string, secret: true, default: sekret-default, description: The token.}
  region: {type: string, default: eu, allowed: [eu, us]}
request: {url: "https://{{ settings.region }}.example/in", auth: {X-Token: "{{ settings.token }}"}}
rules:
  - name: big
    when: {type: track, event: [Order Completed], condition: "properties.revenue > `100`",
           if: "settings.region == 'eu'"}
    require: [{field: properties.currency}]
    requests: [{name: order}, {name: items, for_each: "{{ properties.products }}"}]
  - {name: rest, skip: "not a big order"}
""")
    code, out, _ = engine(capsys, "describe", "demo", "--mappings", str(tmp_path))
    assert code == 0 and "sekret-default" not in out
    assert "  token: string, default [redacted], secret" in out
    assert '  region: string, default "eu", one of "eu", "us"' in out
    flat = " ".join(out.split())
    assert ("big: track calls, named Order Completed, where \"properties.revenue > `100`\", if "
            "\"settings.region == 'eu'\", with \"properties.currency\"; 2 requests (order, items), "
            "per item rest: any call; skips, saying why") in flat
    code, out, _ = engine(capsys, "describe", "demo", "--mappings", str(tmp_path), "--json")
    described = json.loads(out)
    assert "sekret-default" not in out
    assert described["settings"][0] == {"name": "token", "type": "string", "required": False,
                                        "secret": True, "description": "The token.",
                                        "default": "[redacted]"}
    assert [r["name"] for r in described["rules"]] == ["big", "rest"]


def test_the_walkthroughs_whole_file_is_valid_and_passes_its_expectations(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/authoring.md ends with the whole file it builds: it loads, fits the JSON Schema,
    gives what each example's expect: says, and reads as the page shows."""
    page = (ROOT / "docs" / "authoring.md").read_text()
    block = page.split("<!-- authoring.md: the whole file -->\n```yaml\n", 1)[1].split("```\n", 1)[0]
    (project / "mappings" / "acme-crm.yaml").write_text(block)
    assert jsonschema.Draft7Validator(json_schema()).is_valid(yaml.safe_load(block))
    code, out, err = engine(capsys, "test", "--update", "mappings/acme-crm.yaml")
    assert code == 0, out
    assert err == "ok: 4 examples of 1 destination: 4 passed, 4 snapshots written\n"
    code, out, _ = engine(capsys, "describe", "acme-crm")
    assert code == 0 and out in page
