"""Every `examples:` entry of every mapping file, snapshot-tested.

A new mapping file with examples adds its tests here with no Python written. Each snapshot
holds the example's input and its outcomes as `python -m engine map` prints them (secrets
redacted), so it can be read against the destination's documentation.
"""

from __future__ import annotations

import re

import pytest

import engine
from engine.mapping.preview import preview

from tests.support.paths import MAPPINGS

DESTINATIONS = engine.load(MAPPINGS)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:70].rstrip("-")


CASES = [
    pytest.param(destination, example, id=f"{slug}-{i:02d}-{_slug(example.name)}")
    for slug, destination in sorted(DESTINATIONS.items())
    for i, example in enumerate(destination.examples, start=1)
]


@pytest.mark.parametrize(("destination", "example"), CASES)
def test_example(destination: engine.Destination, example: engine.Example, snapshot) -> None:
    bound = destination.bind(example.settings)
    record = {
        "example": example.name,
        "source": example.source,
        "settings": engine.redact(dict(example.settings), bound.secrets),
        "now": example.now,
        "input": example.event,
        "outcomes": preview(bound, example.event, now=example.now),
    }
    assert record == snapshot


EXPECTING = [case for case in CASES if case.values[1].expect is not None]


@pytest.mark.parametrize(("destination", "example"), EXPECTING)
def test_example_gives_what_it_expects(destination: engine.Destination, example: engine.Example) -> None:
    """An example that says its outcomes (`expect:`, e.g. the request a public test suite
    expects for that event) gives exactly those."""
    got = preview(destination.bind(example.settings), example.event, now=example.now)
    assert example.expect is not None
    assert len(got) == len(example.expect), (got, example.expect)
    for outcome, expected in zip(got, example.expect, strict=True):
        if "error" in expected:
            assert "error" in outcome and expected["error"] in outcome["error"], outcome
            continue
        shown = {k: v for k, v in outcome.items() if k in expected}
        assert shown == dict(expected), f"{example.location}: {example.name}"


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
