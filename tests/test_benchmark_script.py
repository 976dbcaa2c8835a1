"""The benchmark compares like with like only while the engine and the hand-written
functions agree: check that here (no timing: speed is measured by the benchmark itself,
never asserted in tests)."""

import sys

import pytest

import engine
from tests.support.paths import MAPPINGS, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_mapping  # noqa: E402
import hand_written  # noqa: E402


def test_events_are_about_1_kb() -> None:
    events = bench_mapping.make_events(300)
    assert 900 < sum(map(len, events)) / len(events) < 1100


@pytest.mark.parametrize("slug", sorted(hand_written.FUNCTIONS))
def test_engine_and_hand_written_agree(slug: str) -> None:
    """Over the destination's examples (their settings and clocks) and generated events."""
    destination = engine.load(MAPPINGS)[slug]
    events = bench_mapping.make_events(300, bench_mapping.MIXES[slug])
    assert bench_mapping.disagreements(destination, hand_written.FUNCTIONS[slug], events,
                                       bench_mapping.BENCH_SETTINGS[slug]) == []
