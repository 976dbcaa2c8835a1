"""A destination's examples, run and judged: the one definition of "an example passes",
used by `engine test` and by the test suite (tests/mapping/test_examples.py).

An example passes when
- what it gives now, its *record* (its name, source, settings with secrets redacted, clock,
  input, and its outcomes as `engine map` prints them), is its snapshot file byte for byte
  (snapshots.py says where that is and how it is written); and
- its outcomes are what its inline `expect:` says, when it has one: as many outcomes, each
  with the keys `expect:` gives equal to them (`error:` is a part of the reason).

The snapshot holds everything an example gives, so that any change shows in review;
`expect:` holds the facts a destination's documentation or a public test suite states,
which no update may overwrite.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import SettingsError
from ..redact import redact
from .destination import Destination, Example
from .preview import preview
from .snapshots import SnapshotStore, serialize

__all__ = ["Verdict", "check_example", "example_record", "expect_problems", "shown_path"]


def example_record(destination: Destination, example: Example) -> dict[str, Any]:
    """What the example gives now, as its snapshot holds it. Raises SettingsError when the
    example's settings do not satisfy the destination's schema."""
    bound = destination.bind(example.settings)
    return {
        "example": example.name,
        "source": example.source,
        "settings": redact(dict(example.settings), bound.secrets),
        "now": example.now,
        "input": example.event,
        "outcomes": preview(bound, example.event, now=example.now),
    }


def expect_problems(outcomes: Sequence[Mapping[str, Any]],
                    expect: Sequence[Mapping[str, Any]]) -> list[str]:
    """How `outcomes` differ from what an example's `expect:` says (none: they agree)."""
    if len(outcomes) != len(expect):
        return [f"it gives {_count(len(outcomes))} and expect: says {len(expect)}:\n"
                + _diff(expect, [dict(o) for o in outcomes], "expect:", "what it gives")]
    problems = []
    for number, (outcome, expected) in enumerate(zip(outcomes, expect, strict=True), start=1):
        if "error" in expected:
            reason = outcome.get("error")
            if not isinstance(reason, str) or str(expected["error"]) not in reason:
                problems.append(f"outcome {number} should be an error saying "
                                f"{expected['error']!r}; it is:\n" + _json(outcome))
            continue
        shown = {k: v for k, v in outcome.items() if k in expected}
        if shown != dict(expected):
            problems.append(f"outcome {number} is not what expect: says:\n"
                            + _diff(dict(expected), shown, "expect:", "what it gives"))
    return problems


@dataclass(frozen=True)
class Verdict:
    """One example judged: whether it passes, and a report that says why not."""

    slug: str
    example: Example
    snapshot: Path
    text: str | None
    """The record as its snapshot would hold it (None when the example cannot be run)."""
    stored: str | None
    """The snapshot file's text (None when there is none)."""
    problems: tuple[str, ...] = ()
    """What else is wrong: its settings, or how it differs from its `expect:`."""

    @property
    def snapshot_matches(self) -> bool:
        return self.text is not None and self.text == self.stored

    @property
    def passed(self) -> bool:
        return self.snapshot_matches and not self.problems

    @property
    def updatable(self) -> bool:
        """Would writing its snapshot change the file?"""
        return self.text is not None and self.text != self.stored

    def report(self) -> str:
        """`file:line:col: example 'name' ...` and every reason it fails, with diffs."""
        lines = [f"{self.example.location}: example '{self.example.name}' ({self.slug}) fails"]
        where = shown_path(self.snapshot)
        if self.text is not None and self.stored is None:
            lines.append(f"  no snapshot yet ({where}): `engine test --update` writes it; read it "
                         "before you commit it")
        elif self.text is not None and self.text != self.stored:
            assert self.stored is not None
            lines.append(f"  it differs from its snapshot ({where}):")
            lines.append(_indent(_text_diff(self.stored, self.text, where, "what it gives now")))
        for problem in self.problems:
            lines.append(_indent(problem))
        return "\n".join(lines)


def check_example(destination: Destination, example: Example, store: SnapshotStore) -> Verdict:
    """Run one example and judge it against its snapshot in `store` and its `expect:`."""
    path = store.path(destination.slug, example)
    stored = store.read(path)
    try:
        record = example_record(destination, example)
    except SettingsError as exc:
        return Verdict(destination.slug, example, path, None, stored,
                       (f"its settings do not fit the destination's: {'; '.join(exc.messages)}",))
    problems = expect_problems(record["outcomes"], example.expect) if example.expect is not None else []
    return Verdict(destination.slug, example, path, serialize(record), stored, tuple(problems))


def shown_path(path: Path) -> str:
    """A path as people read it: relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _count(n: int) -> str:
    return f"{n} outcome{'s' if n != 1 else ''}"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _diff(expected: Any, got: Any, expected_name: str, got_name: str) -> str:
    return _text_diff(_json(expected) + "\n", _json(got) + "\n", expected_name, got_name)


def _text_diff(expected: str, got: str, expected_name: str, got_name: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(keepends=True), got.splitlines(keepends=True),
                                 f"{expected_name} (expected)", got_name, n=3)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else line for line in text.splitlines())
