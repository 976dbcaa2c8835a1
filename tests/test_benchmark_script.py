"""The benchmark compares like with like only while the two mappings agree: check that here
(no timing: speed is measured by the benchmark itself, never asserted in tests)."""

import sys

import engine

from tests.support.paths import MAPPINGS, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_mapping  # noqa: E402


def test_engine_and_hand_written_agree() -> None:
    bound = engine.load(MAPPINGS)["skalin"].bind(bench_mapping.SETTINGS)
    mapped = bench_mapping.with_engine(bound)
    events = bench_mapping.make_events(300)
    assert 900 < sum(map(len, events)) / len(events) < 1100  # "about 1 KB"
    for raw in events:
        assert mapped(raw) == bench_mapping.hand_written(raw)
