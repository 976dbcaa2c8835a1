"""Calixa, Callexa and Skalin written by hand in Python with orjson: the reference the
engine's speed is measured against (benchmarks/bench_mapping.py).

Reference code, not engine code: each function is what a careful engineer would write for
one destination, given its settings: everything that depends only on the settings (headers,
urls, auth) is computed once, when the settings are given. Each one turns the bytes of one event
into the same outcomes as the engine (checked before any timing, and by
tests/test_benchmark_script.py):

    ("request", method, url, headers, body bytes, deliver_after, once_key, once_window,
     message_id, bulk item bytes)    or    ("skip", reason)    or    ("error",)

(An error is compared by its kind only: the engine's reasons name a file:line:col.)
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable

import orjson

# The form encoder is a library function, not mapping logic: the engine's, so that its
# speed weighs the same on both sides.
from engine.serialization import form_encode

__all__ = ["calixa", "callexa", "skalin", "FUNCTIONS", "Outcome", "Mapper"]

Outcome = tuple[Any, ...]
Mapper = Callable[[bytes, datetime], list[Outcome]]
"""The bytes of one event and the time it is mapped at -> its outcomes."""

# ---- what every Segment destination checks ------------------------------------------------

_CALLS = ("identify", "track", "page", "screen", "group", "alias")
_NEEDS = {"track": "event", "group": "groupId"}
_ERROR: list[Outcome] = [("error",)]


def _named(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and value.strip() != ""


def _message(event: Any) -> dict[str, Any] | None:
    """The Segment spec's checks and legacy shapes; None for an event that is not valid."""
    if type(event) is not dict:
        return None
    call = event.get("type")
    if call is None and "action" in event:
        call = event["action"]
        event = {("type" if k == "action" else k): v for k, v in event.items()}
    if not isinstance(call, str) or call.lower() not in _CALLS:
        return None
    if call != call.lower():
        call = call.lower()
        event = {**event, "type": call}
    if not (_named(event.get("userId")) or _named(event.get("anonymousId"))):
        return None
    needed = _NEEDS.get(call)
    if needed and not _named(event.get(needed)):
        return None
    for name in ("traits", "properties", "context", "integrations"):
        value = event.get(name)
        if value is not None and type(value) is not dict:
            return None
    if call == "identify" and not event.get("traits"):
        inner = (event.get("context") or {}).get("traits")
        if type(inner) is dict and inner:
            event = {**event, "traits": inner}
    return event


def _enabled(event: dict[str, Any], name: str) -> bool:
    integrations = event.get("integrations")
    if not integrations:
        return True
    value = integrations[name] if name in integrations else integrations.get("All", True)
    return True if type(value) is dict else bool(value)


def _not_accepted(name: str, call: str, accepts: str) -> list[Outcome]:
    return [("skip", f"{name} does not accept {call} calls (it accepts {accepts})")]


def _off(name: str) -> list[Outcome]:
    return [("skip", f"the event's integrations object turns {name} off")]


# ---- snake_case keys -----------------------------------------------------------------------

_SEPARATORS = re.compile(r"[^0-9A-Za-z\u00C0-\uFFFF]+")
_BOUNDARY = re.compile(r"(?<=[a-z0-9\u00DF-\u00FF])(?=[A-Z\u00C0-\u00DE])"
                       r"|(?<=[A-Z\u00C0-\u00DE])(?=[A-Z\u00C0-\u00DE][a-z\u00DF-\u00FF])")


@lru_cache(maxsize=4096)
def _snake(text: str) -> str:
    words = [w for chunk in _SEPARATORS.split(text) if chunk
             for w in _BOUNDARY.split(chunk) if w]
    return "_".join(w.lower() for w in words)


def _snake_keys(mapping: dict[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    """The mapping itself when no key changes, else a renamed copy (a key already in
    snake_case wins a collision; else the first)."""
    for key in mapping:
        if type(key) is str and key not in keep and _snake(key) != key:
            break
    else:
        return mapping
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if type(key) is not str or key in keep:
            out[key] = value
            continue
        renamed = _snake(key)
        if renamed == key or renamed not in out:
            out[renamed] = value
    return out


# ---- bodies ----------------------------------------------------------------------------------

def _basic(key: str) -> str:
    return "Basic " + base64.b64encode((key + ":").encode()).decode()


def _partner_headers(api_key: str, others: dict[str, Any]) -> dict[str, str]:
    shown = orjson.dumps(others, option=orjson.OPT_SORT_KEYS)
    return {"Accept": "*/*", "Cache-Control": "no-cache", "Content-Type": "application/json",
            "User-Agent": "Segment.io/1.0",
            "X-Segment-Settings": base64.b64encode(shown).decode(), "Authorization": _basic(api_key)}


# ---- Calixa ----------------------------------------------------------------------------------

_CALIXA_KEEP = frozenset({"userId", "groupId", "firstName", "lastName", "createdAt"})
_B2B = {"".join(ch for ch in name.lower() if ch.isalnum()): name for name in (
    "Signed Up", "Account Created", "Account Deleted", "Account Added User",
    "Account Removed User")}


def calixa(settings: dict[str, Any]) -> Mapper:
    """Calixa for these settings: the partner contract, B2B track events by normalized name."""
    url = settings["endpoint"]
    headers = _partner_headers(settings["api_key"], {})

    def run(raw: bytes, now: datetime) -> list[Outcome]:
        event = _message(orjson.loads(raw))
        if event is None:
            return _ERROR
        if not _enabled(event, "Calixa"):
            return _off("Calixa")
        call = event["type"]
        if call not in ("identify", "group", "track"):
            return _not_accepted("Calixa", call, "group, identify, track")
        traits = event.get("traits")
        if type(traits) is dict:
            renamed = _snake_keys(traits, _CALIXA_KEEP)
            if renamed is not traits:
                event = {**event, "traits": renamed}
        context = event.get("context")
        if type(context) is dict and type(context.get("traits")) is dict:
            renamed = _snake_keys(context["traits"], _CALIXA_KEEP)
            if renamed is not context["traits"]:
                event = {**event, "context": {**context, "traits": renamed}}
        if call == "track":
            name = event["event"]
            spelled = _B2B.get("".join(ch for ch in name.lower() if ch.isalnum())) \
                if type(name) is str else None
            if spelled is None:
                return [("skip", "Calixa accepts only the B2B SaaS track events Signed Up, "
                                 "Account Created, Account Deleted, Account Added User and "
                                 f"Account Removed User; '{name}' is not one of them")]
            event = {**event, "event": spelled}
        message_id = event.get("messageId")
        return [("request", "POST", url, dict(headers), orjson.dumps(event), None, None, None,
                 None if message_id is None else str(message_id), None)]
    return run


# ---- Callexa ---------------------------------------------------------------------------------

def _parse_time(value: Any) -> datetime | None:
    """ISO 8601 text, or epoch seconds (milliseconds from 10^11 on), as a UTC time."""
    if type(value) is str:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if abs(value) >= 10**11:
            value = value / 1000
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _format_time(value: datetime) -> str:
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def callexa(settings: dict[str, Any]) -> Mapper:
    """Callexa for these settings: identify calls with an email, the survey delays of its
    page (createdAt matters only with a max delay), once per customer per interval."""
    url = settings["endpoint"]
    min_days = settings.get("min_delay_days", 0)
    max_days = settings.get("max_delay_days", 0)
    weeks = settings.get("min_interval_weeks", 26)
    headers = _partner_headers(settings["api_key"], {
        "min_delay_days": min_days, "max_delay_days": max_days, "min_interval_weeks": weeks})
    window = float(weeks * 7 * 86400)

    def run(raw: bytes, now: datetime) -> list[Outcome]:
        event = _message(orjson.loads(raw))
        if event is None:
            return _ERROR
        if not _enabled(event, "Callexa"):
            return _off("Callexa")
        if event["type"] != "identify":
            return _not_accepted("Callexa", event["type"], "identify")
        traits = event.get("traits") or {}
        email = traits.get("email")
        if email is None or (isinstance(email, (str, list, dict)) and not email):
            return [("skip", "Callexa surveys by email and traits.email is missing")]
        created = traits.get("createdAt")
        deliver_after = None
        if max_days > 0 and created is not None:
            when = _parse_time(created)
            if when is None:
                return _ERROR
            days = (now - when).total_seconds() / 86400
            if days > max_days:
                return [("skip", f"the customer was created {round(days, 1)} days ago, more "
                                 f"than the max delay of {max_days} days: existing customers "
                                 "are not surveyed")]
            due = when + timedelta(days=min_days)
            due = due.replace(microsecond=due.microsecond // 1000 * 1000)  # as it is written
            if due > now:
                deliver_after = _format_time(due)
        message_id = event.get("messageId")
        return [("request", "POST", url, dict(headers), orjson.dumps(event), deliver_after,
                 f"callexa:{str(email).lower()}", window,
                 None if message_id is None else str(message_id), None)]
    return run


# ---- Skalin ----------------------------------------------------------------------------------

_SKALIN_KEEP = frozenset({"groupId", "trait", "email"})


def _jmespath_true(value: Any) -> bool:
    return not (value is None or value is False or value == "" or value == [] or value == {})


def _digest(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()[:16]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def skalin(settings: dict[str, Any]) -> Mapper:
    """Skalin for these settings: a form-encoded hit per page, screen, track and identify,
    and its item for the bulk API."""
    url = settings.get("endpoint", "https://collect.skalin.io/hit")
    client_id = settings["client_id"]
    headers = {"Cache-Control": "no-cache", "Authorization": _basic(settings["api_key"]),
               "Content-Type": "application/x-www-form-urlencoded"}

    def run(raw: bytes, now: datetime) -> list[Outcome]:
        event = _message(orjson.loads(raw))
        if event is None:
            return _ERROR
        if not _enabled(event, "Skalin"):
            return _off("Skalin")
        call = event["type"]
        if call not in ("page", "screen", "identify", "track"):
            return _not_accepted("Skalin", call, "identify, page, screen, track")
        traits = event.get("traits") or {}
        if traits:
            traits = _snake_keys(traits, _SKALIN_KEEP)
        context = event.get("context") or {}
        properties = event.get("properties") or {}
        user_id = event.get("userId")
        if call == "identify":
            if not (traits.get("email") or user_id):
                return [("skip", "Skalin identifies a contact by email or user id, and this "
                                 "identify has neither")]
        elif call != "track" and not (event.get("name") or properties.get("name")):
            return [("skip", "Skalin records a page or screen as a feature named after it, "
                             "and this call has no name")]
        who = event.get("anonymousId") or user_id
        stamp = event.get("timestamp") or _format_time(now)
        form: dict[str, Any] = {"rec": 1, "client_id": client_id}
        trait = traits.get("trait")
        customer = traits.get("groupId") or (trait.get("groupId") if type(trait) is dict
                                             else None) or context.get("groupId")
        if customer is not None:
            form["customer_id"] = customer
        if event.get("messageId") is not None:
            form["event_id"] = _digest(event["messageId"])
        form["visitor_id"] = _digest(who)
        form["visit_id"] = _digest(context.get("sessionId") or f"{who}|{stamp[:10]}")
        form["ts"] = stamp
        page_url = (context.get("page") or {}).get("url") or properties.get("url")
        if page_url is not None:
            form["url"] = page_url
        if context.get("ip") is not None:
            form["cip"] = context["ip"]
        item = None
        if call == "identify":
            identity = {"email": traits["email"]} if traits.get("email") else {"id": user_id}
            form["action"] = "ui"
            form["identity"] = _json(identity)
            if _jmespath_true(context.get("personas")):
                form["traits"] = _json({k: v for k, v in traits.items()
                                        if k not in ("email", "groupId", "trait")})
            else:
                item = ["identities", {"eventId": form.get("event_id"), "identity": identity}]
        else:
            feature = event.get("event") if call == "track" \
                else (event.get("name") or properties.get("name"))
            email = (context.get("traits") or {}).get("email")
            identity = {"email": email} if email else {"id": user_id}
            form["action"] = "ev"
            if email or user_id:
                form["identity"] = _json(identity)
            form["event"] = _json({"name": feature, "event_name": "feature"})
            if email or user_id:
                item = ["features", {"eventId": form.get("event_id"), "name": feature,
                                     "identity": identity}]
        if item is not None:
            value = item[1]
            for name, key in (("customerId", "customer_id"), ("visitId", "visit_id"),
                              ("ts", "ts"), ("url", "url"), ("cip", "cip")):
                if key in form:
                    value[name] = form[key]
            if value["eventId"] is None:
                del value["eventId"]
        body = form_encode({k: v if type(v) is str else str(v) for k, v in form.items()})
        message_id = event.get("messageId")
        return [("request", "POST", url, dict(headers), body, None, None, None,
                 None if message_id is None else str(message_id),
                 None if item is None else orjson.dumps(item))]
    return run


FUNCTIONS = {"calixa": calixa, "callexa": callexa, "skalin": skalin}
"""slug -> a function of the settings giving the hand-written mapper for them."""
