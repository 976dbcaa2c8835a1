"""Every `examples:` entry of every mapping file, judged as `engine test` judges it.

A new mapping file with examples adds its tests here with no Python written. Each example
has a snapshot, `snapshots/examples/<slug>/<example key>.json`: its input and its outcomes
as `python -m engine map` prints them (secrets redacted), to read against the destination's
documentation; an example with `expect:` must also give what that says. One function,
`engine.mapping.examples.check_example`, decides whether an example passes, here and in
`engine test`. This suite never writes a snapshot: `engine test --update` does, on request.
"""

from __future__ import annotations

import pytest

import engine
from engine.mapping.examples import check_example
from engine.mapping.preview import preview
from engine.mapping.snapshots import SnapshotStore
from tests.support.paths import MAPPINGS, SNAPSHOTS

DESTINATIONS = engine.load(MAPPINGS)
STORE = SnapshotStore(SNAPSHOTS)

CASES = [
    pytest.param(destination, example, id=f"{slug}/{example.key}")
    for slug, destination in sorted(DESTINATIONS.items())
    for example in destination.examples
]


@pytest.mark.parametrize(("destination", "example"), CASES)
def test_example(destination: engine.Destination, example: engine.Example) -> None:
    verdict = check_example(destination, example, STORE)
    assert verdict.passed, verdict.report()


def test_no_snapshot_outlives_its_example() -> None:
    orphans = STORE.orphans(DESTINATIONS.values(), whole=True)
    assert orphans == [], "snapshots of no example (`engine test --update` removes them)"


def test_every_destination_has_examples() -> None:
    for slug, destination in DESTINATIONS.items():
        assert destination.examples, f"{slug} has no examples"


def test_examples_never_show_secrets() -> None:
    for destination in DESTINATIONS.values():
        for example in destination.examples:
            bound = destination.bind(example.settings)
            text = repr(preview(bound, example.event, now=example.now))
            for secret in bound.secrets:
                assert secret not in text, f"{destination.slug}: {example.name} shows a secret"
