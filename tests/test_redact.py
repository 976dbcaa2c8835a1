"""Redaction: secrets as they are, and in every encoding a request carries them in."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus, urlencode

import pytest

from engine.redact import redact

SECRET = "sk_live/4f+9 z?"


@pytest.mark.parametrize("prefix", ["", "a", "ab", "user:"])  # every place in a base64 group
@pytest.mark.parametrize("suffix", ["", ":", "::", "-tail"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode,
                                    lambda data: base64.b64encode(data).rstrip(b"=")])
def test_base64_wherever_the_secret_sits(prefix: str, suffix: str, encode: object) -> None:
    encoded = encode(f"{prefix}{SECRET}{suffix}".encode()).decode()  # type: ignore[operator]
    shown = redact(f"Authorization: Basic {encoded}.", [SECRET])
    assert "[redacted]" in shown
    for left in shown.removeprefix("Authorization: Basic ").rstrip(".").split("[redacted]"):
        assert not _gives_back_part_of_the_secret(left), left


def _gives_back_part_of_the_secret(text: str) -> bool:
    """Whether any 3 bytes of SECRET can be decoded from `text`, however it is aligned."""
    parts = {SECRET.encode()[i:i + 3] for i in range(len(SECRET) - 2)}
    for start in range(4):
        chunk = text[start:]
        chunk = chunk[:len(chunk) - len(chunk) % 4]
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                data = decode(chunk)
            except ValueError:
                continue
            if any(part in data for part in parts):
                return True
    return False


@pytest.mark.parametrize("text", [
    quote(SECRET, safe=""), quote(SECRET, safe="").lower(), quote_plus(SECRET), quote(SECRET),
    urlencode({"api_key": SECRET}), json.dumps(SECRET), json.dumps(SECRET).replace("/", "\\/"),
])
def test_url_encoded_and_json_escaped(text: str) -> None:
    shown = redact(f"GET /hit?{text}&x=1", [SECRET])
    assert "[redacted]" in shown
    assert "4f" not in shown and "sk_live" not in shown


def test_nested_values_and_short_values() -> None:
    assert redact({"k": [f"x {SECRET} y"], SECRET: 1}, [SECRET, "ab"]) == {
        "k": ["x [redacted] y"], "[redacted]": 1}
    assert redact("a b ab", ["ab"]) == "a b ab"  # too short to look for
    assert redact("nothing here", [SECRET]) == "nothing here"


def test_text_that_merely_looks_like_base64_is_kept() -> None:
    text = "request id Y2FsaXhh and dXNlcg== are not secrets"
    assert redact(text, [SECRET, "calixa-key-123"]) == text
