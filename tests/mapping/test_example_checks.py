"""Examples are identified by name, and judged one way: engine.mapping.examples."""

from __future__ import annotations

from pathlib import Path

from engine.mapping.destination import example_key
from engine.mapping.examples import check_example, expect_problems
from engine.mapping.snapshots import SnapshotStore, default_root, serialize
from tests.support.builders import destination, problems

FILE = """\
destination: Demo
slug: demo
settings:
  token: {type: string, required: true, secret: true}
request:
  url: https://api.example/in
  auth: {Authorization: "Bearer {{ settings.token }}"}
rules:
  - name: track
    when: {type: track}
    request: {body: {name: "{{ event }}"}}
examples:
  - name: "Track: Signed Up"
    settings: {token: sekret-token}
    event: {type: track, event: Signed Up, userId: u1}
"""


def test_an_example_key_is_its_name_as_a_file_name() -> None:
    assert example_key("Track: analytics.track('Signed Up')") == "track-analytics-track-signed-up"
    assert example_key("  Émile's page ") == "mile-s-page"
    long_one, other = example_key("word " * 60), example_key("word " * 60 + "!")
    assert len(long_one) == 120 and long_one.startswith("word-word-") and long_one != other
    assert example_key("!!!").startswith("example-") and example_key("???") != example_key("!!!")


def test_duplicate_example_names_are_located_load_errors(tmp_path: Path) -> None:
    text = FILE + """\
  - name: "Track: Signed Up"
    event: {type: track, event: x, userId: u1}
  - name: "track -- signed up!"
    event: {type: track, event: x, userId: u1}
"""
    assert problems(tmp_path, text) == [
        "demo.yaml:16:11: duplicate example name 'Track: Signed Up' (the first is at line 13); "
        "examples are identified by name",
        "demo.yaml:18:11: example name 'track -- signed up!' gives the same snapshot file name "
        "(track-signed-up) as 'Track: Signed Up' at line 13; make them differ in their letters "
        "or digits",
    ]


def test_an_example_without_a_name_is_a_located_load_error(tmp_path: Path) -> None:
    text = FILE + "  - event: {type: track, event: x, userId: u1}\n"
    assert problems(tmp_path, text) == ["demo.yaml:16:5: 'name' is required"]


def test_snapshots_live_beside_the_mappings_directory(tmp_path: Path) -> None:
    assert default_root(tmp_path / "mappings" / "demo.yaml") == tmp_path.resolve() / "snapshots"
    store = SnapshotStore(tmp_path / "snapshots")
    demo = destination(tmp_path, FILE)
    assert store.path("demo", demo.examples[0]) == tmp_path / "snapshots/examples/demo/track-signed-up.json"


def test_a_missing_snapshot_fails_and_says_how_to_write_it(tmp_path: Path) -> None:
    demo = destination(tmp_path, FILE)
    verdict = check_example(demo, demo.examples[0], SnapshotStore(tmp_path / "snapshots"))
    assert not verdict.passed and verdict.updatable and verdict.stored is None
    report = verdict.report()
    assert report.startswith(f"{tmp_path}/demo.yaml:13:5: example 'Track: Signed Up' (demo) fails")
    assert "no snapshot yet" in report and "engine test --update" in report
    assert "sekret-token" not in (verdict.text or "") and "[redacted]" in (verdict.text or "")


def test_a_changed_outcome_fails_with_a_diff(tmp_path: Path) -> None:
    demo = destination(tmp_path, FILE)
    store = SnapshotStore(tmp_path / "snapshots")
    first = check_example(demo, demo.examples[0], store)
    assert first.text is not None
    store.write(first.snapshot, first.text)
    assert check_example(demo, demo.examples[0], store).passed
    changed = destination(tmp_path, FILE.replace('name: "{{ event }}"', 'name: "{{ event | upper }}"'))
    verdict = check_example(changed, changed.examples[0], store)
    assert not verdict.passed
    report = verdict.report()
    assert "it differs from its snapshot" in report
    assert '  -          "name": "Signed Up"\n  +          "name": "SIGNED UP"' in report


def test_expect_is_checked_key_by_key_and_errors_by_part_of_the_reason() -> None:
    got = [{"destination": "d", "rule": "r", "request": {"url": "u", "json": {"a": 1}}},
           {"destination": "d", "skipped": "no email"}, {"error": "a track event needs 'event'"}]
    assert expect_problems(got, [{"request": {"url": "u", "json": {"a": 1}}},
                                 {"skipped": "no email"}, {"error": "needs 'event'"}]) == []
    (wrong,) = expect_problems(got, [{"rule": "r", "request": {"url": "u", "json": {"a": 2}}},
                                     {"skipped": "no email"}, {"error": "event"}])
    assert wrong.startswith("outcome 1 is not what expect: says:")
    assert '-      "a": 2' in wrong and '+      "a": 1' in wrong
    (count,) = expect_problems(got, [{"skipped": "no email"}])
    assert count.startswith("it gives 3 outcomes and expect: says 1")
    (error,) = expect_problems(got[:1], [{"error": "nope"}])
    assert error.startswith("outcome 1 should be an error saying 'nope'")


def test_orphans_are_snapshots_of_no_example(tmp_path: Path) -> None:
    demo = destination(tmp_path, FILE)
    store = SnapshotStore(tmp_path / "snapshots")
    verdict = check_example(demo, demo.examples[0], store)
    store.write(verdict.snapshot, serialize({}))
    old = store.folder("demo") / "an-old-name.json"
    gone = store.folder("gone") / "x.json"
    for path in (old, gone):
        store.write(path, "{}\n")
    assert store.orphans([demo]) == [old]
    assert store.orphans([demo], whole=True) == [old, gone]
    store.remove(gone)
    assert not store.folder("gone").exists()
