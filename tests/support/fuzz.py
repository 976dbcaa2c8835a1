"""What the property-based attacks share: JSON as clients and mapping authors write it
(and mistype it), and how many cases a test runs.

`make test` runs a few cases of each (HYPOTHESIS_PROFILE unset: tests/conftest.py's
"default" profile); `make fuzz` many more (the "fuzz" profile). Tests that load mapping
files are dearer per case and run a share of the profile's count.
"""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st

__all__ = ["share", "json_values", "messages", "lines", "mutations", "TEMPLATE_PIECES"]


def share(fraction: float) -> settings:
    """Hypothesis settings for a test that runs `fraction` of the profile's cases."""
    return settings(max_examples=max(5, int(settings.default.max_examples * fraction)))


_text = st.one_of(st.text(max_size=20),
                  st.sampled_from(["", " ", "\u0000", "\ud800", "🙂" * 3, "1e400", "{{", "%s"]))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                     st.floats(allow_nan=False, allow_infinity=False), _text,
                     st.sampled_from([1e20, -1e15, 253402300800, 2**64, -(2**63) - 1]))
json_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=15)
"""Any JSON value, with the values that trip parsers and type checks."""

_fields = {"type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias",
                                    "TRACK", "click", ""]) | json_values,
           "userId": json_values, "anonymousId": json_values, "event": json_values,
           "groupId": json_values, "previousId": json_values, "name": json_values,
           "messageId": json_values, "timestamp": json_values, "originalTimestamp": json_values,
           "sentAt": json_values, "traits": json_values, "properties": json_values,
           "context": json_values, "integrations": json_values}
messages = st.one_of(st.fixed_dictionaries({}, optional=_fields),
                     st.fixed_dictionaries({"type": st.sampled_from(
                         ["track", "identify", "page", "screen", "group", "alias"])},
                         optional={k: v for k, v in _fields.items() if k != "type"}),
                     json_values)
"""Segment messages, well-formed or not in every field."""


@st.composite
def lines(draw: st.DrawFn) -> str:
    """One line of an NDJSON stream as a file might hold it: a message, cut short, nested
    past any limit, a number past 64 bits, a lone surrogate, or no JSON at all."""
    kind = draw(st.sampled_from(["json"] * 5 + ["cut", "deep", "big", "surrogate", "junk"]))
    if kind == "deep":
        depth = draw(st.integers(min_value=60, max_value=5000))
        return '{"type":"track","event":"e","userId":"u","properties":' + '{"a":' * depth \
            + "1" + "}" * depth + "}"
    if kind == "big":
        return '{"type":"identify","userId":"u","traits":{"n":' + "9" * draw(
            st.integers(min_value=20, max_value=5000)) + "}}"
    if kind == "surrogate":
        return '{"type":"identify","userId":"\\ud800"}'
    if kind == "junk":
        return draw(st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t))
    text = json.dumps(draw(messages), ensure_ascii=True)
    if kind == "cut":
        return text[:draw(st.integers(min_value=0, max_value=len(text)))]
    return text


TEMPLATE_PIECES = [
    "{{", "}}", "{%", "%}", "{{ message }}", "{{ traits.email | lower }}", "{% for x in traits %}",
    "{% endfor %}", "{{ [message, message] }}", "{{ 'x' * 1000000 }}", "{{ x | tojson }}",
    "!!float abc", "!!int x", "!!binary aGVsbG8=", "&a", "*a", "<<: *a", "- ", ": ", "\t",
    "\"", "'", "[", "]", "{", "}", "#", "\u0000", "\ud800", "\u2028", "${X}", "extends: ",
    "../", "/etc/passwd", "[@, @] | ", "to_string(@)", "((((((", "settings.api_key",
    "{{ now.fromtimestamp }}", "{{ settings | tojson }}", "| pprint", "%(a)9999999999d",
]
"""Pieces of what a mapping file holds: templates, JMESPath, YAML tags, anchors and
punctuation, and a few known attacks."""


@st.composite
def mutations(draw: st.DrawFn, text: str) -> str:
    """`text` (a mapping or configuration file) changed as a careless or hostile author
    might: lines deleted, repeated or swapped, pieces inserted, characters replaced, or
    the file cut short."""
    lines_ = text.split("\n")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["delete", "repeat", "swap", "insert", "replace", "cut"]))
        at = draw(st.integers(min_value=0, max_value=max(len(lines_) - 1, 0)))
        if kind == "delete" and len(lines_) > 1:
            del lines_[at]
        elif kind == "repeat":
            lines_.insert(at, lines_[at])
        elif kind == "swap":
            other = draw(st.integers(min_value=0, max_value=max(len(lines_) - 1, 0)))
            lines_[at], lines_[other] = lines_[other], lines_[at]
        elif kind == "insert":
            line = lines_[at]
            col = draw(st.integers(min_value=0, max_value=len(line)))
            piece = draw(st.sampled_from(TEMPLATE_PIECES) | st.text(max_size=8))
            lines_[at] = line[:col] + piece + line[col:]
        elif kind == "replace":
            line = lines_[at]
            if line:
                col = draw(st.integers(min_value=0, max_value=len(line) - 1))
                lines_[at] = line[:col] + draw(st.characters()) + line[col + 1:]
        else:
            lines_ = lines_[:at + 1]
            lines_[-1] = lines_[-1][:draw(st.integers(min_value=0, max_value=len(lines_[-1])))]
    return "\n".join(lines_)
