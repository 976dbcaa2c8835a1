"""What Skalin received, whether hit by hit (forms at /skalin) or in bulk (JSON at
/skalin/bulk), in one shape: the single form's field names."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .scripted_server import ScriptedServer


def hits(server: ScriptedServer, path: str = "/skalin") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for received in server.at(path):
        form = {k: v[-1] for k, v in parse_qs(received.body.decode(), keep_blank_values=True).items()}
        form["identity"] = json.loads(form["identity"]) if "identity" in form else None
        if form.get("action") == "ev":
            form["name"] = json.loads(form.pop("event"))["name"]
        found.append(form)
    for received in server.at(path + "/bulk"):
        query = {k: v[-1] for k, v in parse_qs(urlsplit(received.path).query).items()}
        body = json.loads(received.body)
        for action, items in (("ui", body.get("identities", [])), ("ev", body.get("features", []))):
            for item in items:
                hit = {"action": action, "rec": query["rec"], "client_id": query["client_id"],
                       "event_id": item["eventId"], "identity": item.get("identity"),
                       "customer_id": item.get("customerId"), "visit_id": item["visitId"],
                       "ts": item["ts"], "url": item.get("url"), "cip": item.get("cip")}
                if action == "ev":
                    hit["name"] = item["name"]
                found.append({k: v for k, v in hit.items() if v is not None})
    return found
