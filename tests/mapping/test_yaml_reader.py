"""Reading YAML: every value keeps its place; YAML 1.1 traps are named."""

import pytest

from engine.mapping.yaml_reader import parse_yaml


def messages(text: str) -> list[str]:
    return [str(p) for p in parse_yaml(text, "f.yaml")[1]]


def test_positions_of_keys_and_values() -> None:
    doc, found = parse_yaml("a:\n  b: [1, 2]\n  c: x\n", "f.yaml")
    assert not found
    assert doc.data == {"a": {"b": [1, 2], "c": "x"}}
    assert str(doc.values[("a", "c")]) == "f.yaml:3:6"
    assert str(doc.keys[("a", "c")]) == "f.yaml:3:3"
    assert str(doc.values[("a", "b", 1)]) == "f.yaml:2:10"


def test_syntax_error_has_a_location() -> None:
    assert messages("a: [1, 2\nb: 3\n") == [
        "f.yaml:2:2: YAML syntax error: while parsing a flow sequence expected ',' or ']', but got ':'"]


def test_unquoted_template_is_named() -> None:
    assert messages("a: {{ traits.email }}\n") == [
        "f.yaml:1:4: unquoted template: YAML reads '{{' as a nested mapping; quote the value, "
        "e.g. \"{{ traits.email }}\""]


def test_yaml_11_traps() -> None:
    found = messages("a: yes\nb: 0123\nc: 2024-01-01\nd: 1:20\ne: true\nf: '0123'\n")
    assert found == [
        "f.yaml:1:4: 'yes' is read by YAML 1.1 as the boolean true; write true/false, or quote it if you mean the text 'yes'",
        "f.yaml:2:4: '0123' is read by YAML 1.1 as a number that is not what it looks like (leading zero, base prefix or sexagesimal); quote it: \"0123\"",
        "f.yaml:3:4: '2024-01-01' is read by YAML as a date, not text; quote it: \"2024-01-01\"",
        "f.yaml:4:4: '1:20' is read by YAML 1.1 as a number that is not what it looks like (leading zero, base prefix or sexagesimal); quote it: \"1:20\"",
    ]


def test_duplicate_keys_are_reported() -> None:
    assert messages("a: 1\nb: 2\na: 3\n") == ["f.yaml:3:1: duplicate key 'a' (the first is at line 1)"]


def test_alias_expansion_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    found = messages("\n".join(lines) + "\n")
    assert found == ["f.yaml:1:1: the document expands to more than 200000 nodes (aliases?)"]


def test_empty_file() -> None:
    assert messages("") == ["f.yaml:1:1: the file is empty"]


def test_merge_keys_are_refused() -> None:
    assert messages("base: &b {x: 1}\nother:\n  <<: *b\n") == [
        "f.yaml:3:3: merge keys ('<<') are not supported; use 'extends' to share a base file"]


def test_long_values_are_not_repeated_and_odd_tags_are_located_problems() -> None:
    text = ("write_key: 0x5f3c9a8b7d6e5f4a3b2c1d0e\n"
            "ratio: !!float abc\n"
            "blob: !!binary aGVsbG8=\n")
    _, problems = parse_yaml(text, "c.yaml")
    lines = [str(p) for p in problems]
    assert lines[0].startswith("c.yaml:1:12: this value (26 characters) is read by YAML 1.1 as a number")
    assert "5f3c" not in " ".join(lines)  # it may be a secret
    assert lines[1].startswith("c.yaml:2:8: cannot read value: ")
    assert lines[2] == ("c.yaml:3:7: a bytes value (from a YAML tag) has no place here: "
                        "write text, a number, true/false or null")


def test_a_value_that_its_tag_cannot_read_is_not_repeated() -> None:
    _, problems = parse_yaml("write_key: !!int sklive5f3c9a8b7d6e\n", "c.yaml")
    assert [str(p) for p in problems] == ["c.yaml:1:12: cannot read value: it is not a valid int"]


@pytest.mark.parametrize(("text", "where"), [
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "c.yaml:1:103"),
    ("a: " + "{b: " * 300 + "1" + "}" * 300 + "\n", "c.yaml:1:"),
    ("".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v\n", "c.yaml:101:"),
])
def test_deep_nesting_is_a_located_problem_not_a_recursion_error(text: str, where: str) -> None:
    _, problems = parse_yaml(text, "c.yaml")
    assert len(problems) == 1
    assert str(problems[0]).startswith(where), problems
    assert "nested more than 100 levels deep" in problems[0].message


@pytest.mark.parametrize("libyaml", [True, False])
def test_the_depth_limit_is_the_same_with_or_without_libyaml(libyaml: bool,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # libyaml composes first and its tree is measured; PyYAML (its fallback, and the reader
    # where PyYAML has no libyaml) only reads what the scan found shallow enough.
    import yaml

    from engine.mapping import yaml_reader
    if not libyaml:
        monkeypatch.setattr(yaml_reader, "_LOADER", yaml.SafeLoader)
    deepest = "a: " + "[" * 99 + "1" + "]" * 99 + "\n"  # the mapping and 99 lists: 100 levels
    doc, problems = parse_yaml(deepest, "c.yaml")
    assert problems == [] and doc.data is not None
    _, problems = parse_yaml("a: " + "[" * 100 + "1" + "]" * 100 + "\n", "c.yaml")
    assert [str(p) for p in problems] == ["c.yaml:1:103: YAML nested more than 100 levels deep"]
    # An indentless sequence opens no token: the scan counts what PyYAML counts.
    text = "".join("  " * i + f"k{i}:\n" for i in range(99)) + "  " * 99 + "- x\n"
    doc, problems = parse_yaml(text, "c.yaml")
    assert problems == [], problems
