"""The commands for destination authors, run in process through the command line's main():
`engine test` (and its --update), `engine init`, `engine describe`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.cli import main
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
