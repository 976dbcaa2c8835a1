"""Every problem in a mapping file is reported when it loads, as file:line:col: message."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine

from tests.support.builders import problems, write


def test_a_valid_file_has_no_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        destination: Demo
        slug: demo
        rules:
          - name: all
            request: {url: "https://demo.example/{{ type }}", body: "{{ message }}"}
        """) == []


BROKEN = """\
    destination: Demo
    slug: demo
    settings:
      api_key: {type: string, required: true, secret: true}
    request:
      url: "{{ settings.endpoint }}"
      headers:
        X-Key: "{{ settings.api_key | nope }}"
    rules:
      - name: identify
        when: {type: identify, condition: "traits.["}
        extract:
          email: "traits.email || unknown_fn(traits)"
        request:
          body:
            email: "{{ email }"
            multi: |
              first line
              {{ traits.name | upper }}
              {{ traits.name | lower( }}
    """


def test_schema_and_compile_problems_are_reported_in_one_run(tmp_path: Path) -> None:
    # What the schema refuses is left out, and the rest is compiled all the same: one run
    # of `validate` reports the problems of every stage (the lines after the one added move
    # one down).
    broken = BROKEN.replace("    settings:\n", "    setings: {}\n    settings:\n", 1)
    assert problems(tmp_path, broken) == ["demo.yaml:3:1: unknown key 'setings'"] + [
        f"demo.yaml:{int(line) + 1}:{rest}" for line, rest in
        (p.removeprefix("demo.yaml:").split(":", 1) for p in problems(tmp_path, BROKEN))]


def test_every_problem_at_once_with_locations(tmp_path: Path) -> None:
    assert problems(tmp_path, BROKEN) == [
        "demo.yaml:6:8: setting 'endpoint' is used but not declared (declared: api_key)",
        "demo.yaml:8:13: template error: No filter named 'nope'.",
        "demo.yaml:11:48: JMESPath syntax error: Invalid jmespath expression",
        "demo.yaml:13:31: unknown JMESPath function 'unknown_fn' (known: abs, avg, ceil, coalesce, contains, ends_with, floor, join, keys, length, lower, map, max, max_by, merge, min, min_by, not_null, reverse, snake_case, snake_case_keys, sort, sort_by, starts_with, sum, to_array, to_number, to_string, type, upper, values)",
        "demo.yaml:16:17: template error: unexpected '}'",
        "demo.yaml:20:11: template error: unexpected '}', expected ')'",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("slug: demo\nrules: [{name: a, skip: x}]\n", ["demo.yaml:1:1: 'destination' is required"]),
    ("destination: D\nslug: Demo!\nrules: [{name: a, skip: x}]\n",
     ["demo.yaml:2:7: 'slug': value does not match regex '[a-z0-9][a-z0-9-]*'"]),
    ("destination: D\nslug: d\naccepts: [identify, click]\nrules: [{name: a, skip: x}]\n",
     ["demo.yaml:3:10: 'accepts': unallowed values ('click',)"]),
    ("destination: D\nslug: d\nrules: [{name: a, when: {type: clicks}, skip: x}]\n",
     ["demo.yaml:3:32: 'type': unallowed value clicks"]),
    ("destination: D\nslug: d\nrules: [{name: a, whenn: {}, skip: x}]\n",
     ["demo.yaml:3:19: unknown key 'whenn'"]),
    ("destination: D\nslug: d\nrules: []\n", ["demo.yaml:3:8: a destination needs at least one rule"]),
    ("destination: D\nslug: d\nrules: [{name: a, skip: x}, {name: a, skip: y}]\n",
     ["demo.yaml:3:36: duplicate rule name 'a'"]),
    ("destination: D\nslug: d\nrules:\n  - name: a\n    request: {body: x}\n",
     ["demo.yaml:4:5: no url: set request.url here or in the file's request defaults"]),
    ("destination: D\nslug: d\nrules:\n  - name: a\n    extract: {settings: traits}\n    skip: x\n",
     ["demo.yaml:5:15: 'settings' is a reserved name in templates; pick another"]),
    ("destination: D\nslug: d\nrequest: {url: 'https://x', auth: {Authorization: '{{ userId }}'}}\nrules: [{name: a}]\n",
     ["demo.yaml:3:51: auth may use settings only (it is rendered again at send time, without the event); found: userId"]),
    ("destination: D\nslug: d\naccepts: [track]\nrules: [{name: a, when: {type: identify}, skip: x}]\n",
     ["demo.yaml:4:32: rule 'a' matches identify calls, which 'accepts' leaves out"]),
    ("destination: D\nslug: d\nsettings: {k: {type: string, required: true, default: x}}\nrules: [{name: a, skip: x}]\n",
     ["demo.yaml:3:15: setting 'k' is required and has a default; keep one of the two"]),
    ("destination: D\nslug: d\nrules: [{name: a, skip: {{ x }}}]\n",
     ["demo.yaml:3:25: unquoted template: YAML reads '{{' as a nested mapping; quote the value, e.g. \"{{ traits.email }}\""]),
    ("destination: D\nslug: d\nrequest: {url: 'https://x'}\nrules: [{name: a, request: {body: {flag: on}}}]\n",
     ["demo.yaml:4:42: 'on' is read by YAML 1.1 as the boolean true; write true/false, or quote it if you mean the text 'on'"]),
    ("- a\n- b\n", ["demo.yaml:1:1: a mapping file must be a YAML mapping at the top level"]),
    ("destination: D\nslug: d\nsettings: {key: {type: string, secret: true}}\nrequest: {url: 'https://x?k={{ settings.key | upper }}'}\nrules: [{name: a}]\n",
     ["demo.yaml:4:16: secret setting 'key' may be used in the url only as it is, {{ settings.key }} (it is inserted, percent-encoded, at send time)"]),
    ("destination: D\nslug: d\nsettings: {key: {type: string, secret: true}}\nrequest: {url: 'https://x', body: {k: '{{ settings.key }}'}}\nrules: [{name: a}]\n",
     ["demo.yaml:4:35: secret setting 'key' may be used in request.auth, request.auth_query or inserted as it is in the url only (requests are stored without them)"]),
])
def test_schema_problems(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


def test_template_problem_inside_a_block_scalar_points_at_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://x"}
        rules:
          - name: a
            request:
              body:
                text: |
                  one
                  two
                  {{ traits.name | nope }}
        """)
    assert found == ["demo.yaml:11:11: template error: No filter named 'nope'."]


def test_extends_reports_problems_in_the_base_file(tmp_path: Path) -> None:
    write(tmp_path, "abstract: true\nrequest:\n  url: '{{ settings.endpoint }}'\n  methd: POST\n", "_base.yaml")
    found = problems(tmp_path, "destination: D\nslug: d\nextends: _base.yaml\nrules: [{name: a}]\n")
    assert found == ["_base.yaml:3:8: setting 'endpoint' is used but not declared (declared: none)",
                     "_base.yaml:4:3: unknown key 'methd'"]


def test_extends_inherits_and_overrides(tmp_path: Path) -> None:
    write(tmp_path, """\
abstract: true
settings: {endpoint: {type: string, required: true}}
request:
  url: "{{ settings.endpoint }}"
  headers: {A: base, B: base}
  body: "{{ message }}"
""", "_base.yaml")
    path = write(tmp_path, """\
destination: D
slug: d
extends: _base.yaml
request:
  headers: {B: own}
rules: [{name: a}]
""")
    destination = engine.load(path)["d"]
    (request,) = destination.map({"type": "identify", "userId": "u"}, settings={"endpoint": "https://e"})
    assert request.url == "https://e"
    assert request.headers == {"A": "base", "B": "own", "Content-Type": "application/json"}
    assert request.body == {"type": "identify", "userId": "u"}


def test_extends_problems_in_the_child_point_at_the_child(tmp_path: Path) -> None:
    write(tmp_path, "abstract: true\nrequest: {url: 'https://x'}\n", "_base.yaml")
    found = problems(tmp_path, "destination: D\nslug: d\nextends: _base.yaml\nrules:\n  - name: a\n    request: {body: '{{ x | nope }}'}\n")
    assert found == ["demo.yaml:6:22: template error: No filter named 'nope'."]


def test_extends_a_missing_file(tmp_path: Path) -> None:
    found = problems(tmp_path, "destination: D\nslug: d\nextends: _nope.yaml\nrules: [{name: a, skip: x}]\n")
    assert len(found) == 1 and found[0].startswith("_nope.yaml:1:1: cannot read file:")


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, "abstract: true\nextends: _b.yaml\n", "_a.yaml")
    write(tmp_path, "abstract: true\nextends: _a.yaml\n", "_b.yaml")
    found = problems(tmp_path, "destination: D\nslug: d\nextends: _a.yaml\nrules: [{name: a, skip: x}]\n")
    assert len(found) == 1 and "'extends' makes a cycle" in found[0]


def test_duplicate_slugs_across_files(tmp_path: Path) -> None:
    write(tmp_path, "destination: A\nslug: same\nrules: [{name: a, skip: x}]\n", "a.yaml")
    write(tmp_path, "destination: B\nslug: same\nrules: [{name: a, skip: x}]\n", "b.yaml")
    _, found = engine.check([tmp_path])
    assert [p.message for p in found] == [f"slug 'same' is already used by {tmp_path / 'a.yaml'}"]


def test_load_raises_with_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "destination: D\nslug: d\nrules: [{name: a, skip: '{{ x | nope }}', extract: {v: 'a.['}}]\n")
    with pytest.raises(engine.MappingError) as caught:
        engine.load(path)
    assert len(caught.value.problems) == 2
    assert str(caught.value).count(f"{path}:3:") == 2


def test_the_shipped_mappings_are_valid() -> None:
    destinations, found = engine.check(["mappings"])
    assert found == []
    assert {"calixa", "callexa", "callexa-sync-back", "skalin"} <= set(destinations)


@pytest.mark.parametrize(("extends", "expected"), [
    ("/etc/passwd", "demo.yaml:3:1: 'extends' names a file beside this one or below it; '/etc/passwd' is elsewhere"),
    ("../outside.yaml", "demo.yaml:3:1: 'extends' names a file beside this one or below it; '../outside.yaml' is elsewhere"),
    ("list.yaml", "list.yaml:1:1: a mapping file must be a YAML mapping at the top level"),
    ("big.yaml", "big.yaml:1:1: cannot read file: larger than 1,000,000 bytes"),
])
def test_extends_reads_only_small_mapping_files_beside_it(tmp_path: Path, extends: str, expected: str) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "big.yaml").write_text("# " + "x" * 1_000_001 + "\n")
    found = problems(tmp_path, f"destination: D\nslug: d\nextends: {extends}\nrules: [{{name: a}}]\n")
    assert expected in found, found


def test_a_pipe_or_device_is_not_read(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would wait for a writer forever
    found = problems(tmp_path, "destination: D\nslug: d\nextends: pipe.yaml\nrules: [{name: a}]\n")
    assert any("cannot read file: not a regular file" in line for line in found), found


def test_a_file_with_every_kind_of_problem_takes_one_run(tmp_path: Path) -> None:
    # A YAML trap, schema problems (a bad setting type, an unknown key, a rule without a
    # name, an incomplete `once`), template and JMESPath errors, an unknown name and a
    # duplicate example: all in one run. What the schema refuses is left out, and nothing
    # follows from that (the refused secret setting is not "used but not declared"); what
    # comes after a left-out rule keeps its own line.
    found = problems(tmp_path, """\
        destination: Demo
        slug: demo
        abstract: no
        settings:
          token: {type: strng, secret: true}
          region: {type: string}
        request:
          url: "https://{{ settings.region }}.api.example/in"
          auth: {Authorization: "Bearer {{ settings.token }}"}
          methd: POST
        rules:
          - when: {type: track}
            request: {body: {a: "{{ event | nope }}"}}
          - name: track
            when: {type: track, condition: "properties.["}
            request:
              body: {name: "{{ event }", once: "{{ propertes.x }}"}
              once: {key: "{{ userId }}"}
          - name: page
            when: {type: page}
            request: {body: {name: "{{ name | nope2 }}"}}
        examples:
          - name: a
            event: {type: track, event: x, userId: u}
          - name: a
            event: {type: track, event: x, userId: u}
        """)
    assert [p.split(": ", 1)[0] for p in found] == [
        "demo.yaml:3:11", "demo.yaml:5:17", "demo.yaml:10:3", "demo.yaml:12:5", "demo.yaml:15:49",
        "demo.yaml:17:21", "demo.yaml:17:41", "demo.yaml:18:13", "demo.yaml:21:29", "demo.yaml:25:11"]
    assert found[0].startswith("demo.yaml:3:11: 'no' is read by YAML 1.1 as the boolean false")
    assert found[1:4] == ["demo.yaml:5:17: 'type': unallowed value strng",
                          "demo.yaml:10:3: unknown key 'methd'",
                          "demo.yaml:12:5: 'name' is required"]
    assert found[6].startswith("demo.yaml:17:41: unknown name 'propertes'")
    assert found[7:] == ["demo.yaml:18:13: 'window_seconds' is required",
                         "demo.yaml:21:29: template error: No filter named 'nope2'.",
                         "demo.yaml:25:11: duplicate example name 'a' (the first is at line 23); "
                         "examples are identified by name"]


def test_what_follows_from_a_refused_part_is_not_reported(tmp_path: Path) -> None:
    # The only rule, refused, leaves no rules: that is not a second problem; nor is a
    # batch_item whose file-level batch was refused.
    assert problems(tmp_path, """\
        destination: D
        slug: d
        batch: {max_items: 1, request: {url: "https://x.example/bulk", body: "{{ items }}"}}
        request: {url: "https://x.example/in", batch_item: {into: hits, value: "{{ event }}"}}
        rules: [{when: {type: track}}]
        """) == ["demo.yaml:3:20: 'max_items': min value is 2", "demo.yaml:5:9: 'name' is required"]


def test_an_unreadable_base_stops_its_file_there(tmp_path: Path) -> None:
    write(tmp_path, "abstract: true\nrequest: {url: [\n", "_base.yaml")
    found = problems(tmp_path, "destination: D\nslug: d\nextends: _base.yaml\nrules: [{name: a, skip: '{{ x | nope }}'}]\n")
    assert len(found) == 1 and found[0].startswith("_base.yaml:3:1: YAML syntax error")


def test_an_example_time_that_is_not_a_time_is_a_located_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        destination: D
        slug: d
        rules: [{name: a, request: {url: "https://d.example"}}]
        examples:
          - {name: e, now: "{{2024-03-02T06:00:00Z", event: {type: track, event: x, userId: u}}
        """) == ["demo.yaml:5:20: an example's now must be an ISO 8601 time, got '{{2024-03-02T06:00:00Z'"]
