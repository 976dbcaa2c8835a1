"""The command-line contract: `python -m engine validate` and `python -m engine map`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.support.builders import shipped_slugs, write
from tests.support.cli import lines, run
from tests.support.paths import ROOT

CALIXA = ["--destination", "calixa", "--setting", "api_key=calixa-secret-key",
          "--setting", "endpoint=https://calixa.example/in", "--now", "2024-01-01T00:00:00Z"]


def test_validate_default_directory() -> None:
    result = run("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "valid" in result.stderr


def test_validate_reports_problems_one_per_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "destination: D\nslug: d\nrules: [{name: a, skip: '{{ x | nope }}', extract: {v: 'a.['}}]\n")
    result = run("validate", str(bad), "mappings")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{bad}:3:26: template error: No filter named 'nope'.",
        f"{bad}:3:60: JMESPath syntax error: Invalid jmespath expression",
    ]


def test_map_writes_one_line_per_outcome_and_redacts_secrets() -> None:
    events = "\n".join(json.dumps(e) for e in [
        {"type": "identify", "userId": "u1", "traits": {"email": "a@b.example"}},
        {"type": "page", "userId": "u1"},
        {"type": "track", "userId": "u1"},
        "not an object",
    ]) + "\n{broken json\n"
    result = run("map", *CALIXA, stdin=events)
    assert result.returncode == 0, result.stderr
    out = lines(result)
    assert [sorted(o) for o in out] == [["destination", "event", "request", "rule"],
                                        ["destination", "event", "skipped"],
                                        ["error", "event"], ["error", "event"], ["error", "event"]]
    assert [o["event"] for o in out] == [1, 2, 3, 4, 5]
    assert out[0]["request"]["headers"]["Authorization"] == "[redacted]"
    assert out[0]["request"]["json"]["traits"] == {"email": "a@b.example"}
    assert "deliver_after" not in out[0]["request"]
    assert out[1]["skipped"] == "Calixa does not accept page calls (it accepts group, identify, track)"
    assert out[2]["error"] == "a track event needs 'event'"
    assert out[4]["error"].startswith("line 5: invalid JSON")
    assert "calixa-secret-key" not in result.stdout + result.stderr


def test_map_show_secrets() -> None:
    result = run("map", *CALIXA, "--show-secrets", stdin='{"type": "identify", "userId": "u"}')
    (line,) = lines(result)
    assert line["request"]["headers"]["Authorization"] == "Basic Y2FsaXhhLXNlY3JldC1rZXk6"


def test_map_reads_a_json_array_from_files(tmp_path: Path) -> None:
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"type": "identify", "userId": f"u{i}"} for i in range(3)]))
    more = tmp_path / "more.ndjson"
    more.write_text('{"type": "group", "groupId": "g", "userId": "u"}\n')
    result = run("map", *CALIXA, str(events), str(more))
    assert [o["event"] for o in lines(result)] == [1, 2, 3, 4]
    assert [o["rule"] for o in lines(result)] == ["identify", "identify", "identify", "group"]


def test_map_settings_file_and_coercion(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("api_key: callexa-secret\nendpoint: https://callexa.example/in\nmax_delay_days: 1\n")
    result = run("map", "--destination", "callexa", "--settings", str(settings),
                 "--setting", "min_delay_days=2", "--setting", "max_delay_days=14",
                 "--now", "2024-01-01T00:00:00Z",
                 stdin='{"type": "identify", "userId": "u", "traits": {"email": "e@x.example", "createdAt": "2023-12-31T00:00:00Z"}}')
    (line,) = lines(result)
    assert line["request"]["deliver_after"] == "2024-01-02T00:00:00.000Z"


def test_map_missing_required_setting_is_named() -> None:
    result = run("map", "--destination", "calixa", "--setting", "api_key=k123", stdin="")
    assert result.returncode == 2
    assert result.stderr == "error: Calixa: invalid settings: missing required setting 'endpoint'\n"
    assert result.stdout == ""


def test_map_bad_arguments_exit_2(tmp_path: Path) -> None:
    cases = {
        ("map", "--destination", "nope"): f"error: unknown destination 'nope' (known: {shipped_slugs()})\n",
        ("map", *CALIXA[:-2], "--now", "soon"): "error: --now must be an ISO 8601 time, got 'soon'\n",
        ("map", *CALIXA, "--setting", "novalue"): "error: --setting takes KEY=VALUE, got 'novalue'\n",
        ("map", "--destination", "callexa", "--setting", "min_delay_days=three"):
            "error: Callexa: invalid settings: setting 'min_delay_days' must be a integer, got 'three'\n",
        ("map", "--destination", "calixa", "--setting", "colour=red"):
            "error: Calixa: invalid settings: unknown setting 'colour' (known: api_key, endpoint)\n",
        ("map", *CALIXA, str(tmp_path / "missing.ndjson")): f"error: no such events file: {tmp_path / 'missing.ndjson'}\n",
    }
    for args, message in cases.items():
        result = run(*args)
        assert (result.returncode, result.stderr) == (2, message), args


def test_map_invalid_mappings_exit_2(tmp_path: Path) -> None:
    write(tmp_path, "destination: D\nslug: d\nrules: [{name: a, skip: '{{ x | nope }}'}]\n")
    result = run("map", "--destination", "d", "--mappings", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: invalid mappings:",
                                          f"{tmp_path}/demo.yaml:3:26: template error: No filter named 'nope'."]


def test_map_streams_in_constant_memory(tmp_path: Path) -> None:
    # 200,000 events through a pipe: the process must not hold them all.
    script = (
        "import json, sys\n"
        "line = json.dumps({'type': 'identify', 'userId': 'u', 'traits': {'email': 'e', 'pad': 'x' * 400}})\n"
        "for _ in range(200000): sys.stdout.write(line + '\\n')\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as producer, \
            subprocess.Popen(
                [sys.executable, "-c",
                 "import runpy, sys; sys.argv = ['engine', 'map', *sys.argv[1:]];\n"
                 "try:\n  runpy.run_module('engine', run_name='__main__')\n"
                 "except SystemExit: pass\n"
                 # VmHWM is this program's own peak; ru_maxrss would also count the forked
                 # copy of the test runner it was started from.
                 "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1],"
                 " file=sys.stderr)",
                 *CALIXA],
                stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=ROOT) as consumer:
        producer.stdout.close()  # type: ignore[union-attr]  # the consumer owns it now
        count = sum(1 for _ in consumer.stdout)  # type: ignore[union-attr]
        peak_kib = int(consumer.stderr.read().split()[-1])  # type: ignore[union-attr]
    assert count == 200000
    # ~100 MB of input; the imports alone take ~40 MB. Holding the input would need far more.
    assert peak_kib < 90_000, f"peak RSS {peak_kib} KiB"


import pytest  # noqa: E402


@pytest.mark.parametrize(("slug", "given", "missing"), [
    ("calixa", ["endpoint=https://x.example"], "api_key"),
    ("callexa", ["api_key=abcd1234"], "endpoint"),
    ("skalin", ["api_key=abcd1234"], "client_id"),
    ("callexa-sync-back", [], "write_key"),
])
def test_every_destination_names_a_missing_required_setting(slug: str, given: list[str], missing: str) -> None:
    args = [a for pair in given for a in ("--setting", pair)]
    result = run("map", "--destination", slug, *args)
    assert result.returncode == 2
    assert result.stderr.endswith(f"missing required setting '{missing}'\n")


def test_map_shows_progress_on_a_terminal() -> None:
    import os
    import pty
    import select

    line = json.dumps({"type": "identify", "userId": "u", "traits": {"email": "e"}}) + "\n"
    leader, follower = pty.openpty()
    try:
        with subprocess.Popen([sys.executable, "-m", "engine", "map", *CALIXA], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=follower) as process:
            os.close(follower)
            follower = -1
            shown = b""
            deadline = time.monotonic() + 60
            # A stream that lasts until the progress line shows (it waits for a second).
            while b"events mapped (" not in shown and time.monotonic() < deadline:
                process.stdin.write((line * 2000).encode())  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
                while select.select([leader], [], [], 0)[0]:
                    shown += os.read(leader, 4096)
            process.stdin.close()  # type: ignore[union-attr]
            process.wait(timeout=120)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert b"events mapped (" in shown
    assert shown.rstrip().endswith(b"/s)")


def test_map_shows_no_progress_when_stderr_is_not_a_terminal() -> None:
    result = run("map", *CALIXA, stdin=json.dumps({"type": "identify", "userId": "u"}) * 1 + "\n")
    assert result.stderr == ""


def test_a_settings_file_that_is_not_yaml_is_named_without_its_content(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("api_key: calixa-secret-key-123\nendpoint: [unclosed\n")
    result = run("map", *CALIXA[:2], "--settings", str(settings), stdin="")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot read settings file {settings}:")
    assert "calixa-secret-key-123" not in result.stderr


def test_map_reads_on_past_lines_it_cannot_read_or_map() -> None:
    deep = '{"a":' * 3000 + "1" + "}" * 3000
    stdin = "\n".join([
        '{"type":"identify","userId":"u1","traits":{"email":"a@example.com","x":"\\ud800"}}',
        deep,
        '{"type":"identify","userId":"u2","traits":{"email":"b@example.com"}}',
    ]) + "\n"
    result = run("map", *CALIXA, stdin=stdin)
    assert result.returncode == 0, result.stderr
    found = lines(result)
    assert found[0] == {"event": 1, "error": "the event cannot be mapped: str is not valid UTF-8: "
                                             "surrogates not allowed"}
    # Too deep for the JSON reader of some Pythons (3.11), read and refused as no event by
    # others (3.13): an error outcome either way.
    assert found[1]["event"] == 2 and set(found[1]) == {"event", "error"}
    assert found[2]["event"] == 3 and found[2]["rule"] == "identify"


def test_map_reads_on_past_an_expression_that_fails_at_run_time(tmp_path: Path) -> None:
    write(tmp_path, """\
        destination: Ages
        slug: ages
        request: {url: "https://ages.example/in"}
        rules:
          - name: aged
            extract: {age_length: length(traits.age)}
            request: {body: {n: "{{ age_length }}"}}
        """, "ages.yaml")
    stdin = "\n".join([
        '{"type":"identify","userId":"u1","traits":{"age":42}}',      # length() of a number
        '{"type":"identify","userId":"u2","traits":{"age":"forty"}}',
    ]) + "\n"
    result = run("map", "--destination", "ages", "--mappings", str(tmp_path), stdin=stdin)
    assert result.returncode == 0, result.stderr
    found = lines(result)
    assert found[0]["event"] == 1
    assert found[0]["error"].startswith(f"ages: rule aged: {tmp_path}/ages.yaml:6:27: "
                                        "JMESPath 'length(traits.age)' failed: ")
    assert "Traceback" not in result.stderr
    assert found[1]["request"]["json"] == {"n": 5}


def test_explain_prints_the_generated_function_of_a_rule() -> None:
    result = run("explain", "skalin", "feature")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# rule 'feature' of 'skalin'")
    compile(result.stdout, "<explained>", "exec")  # the very source the rule runs
    assert "def run(event, now, matched, pre):" in result.stdout


def test_explain_names_the_rules_of_a_destination() -> None:
    result = run("explain", "calixa", "nope")
    assert result.returncode == 2
    assert "calixa has no rule 'nope' (its rules: identify, group, b2b-track, other-track)" in result.stderr


def test_validate_says_which_templates_jinja_renders(tmp_path: Path) -> None:
    write(tmp_path, """\
        destination: D
        slug: d
        request: {url: "https://d.example/in", body: {ids: "{% for i in properties.items %}{{ i.id }},{% endfor %}"}}
        rules: [{name: r}]
        """)
    result = run("validate", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo.yaml:3:52: warning: rendered by Jinja, not by generated code (rule r)" in result.stderr
