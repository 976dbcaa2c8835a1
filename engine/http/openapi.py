"""The shim's HTTP API as an OpenAPI 3.1 document, served at GET /openapi.json.

Written by hand, next to the routes it describes; tests/http/test_openapi.py holds the two
together (every route documented, nothing documented that is not a route).
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON_ERROR = {"content": {"application/json": {"schema": _ERROR}}}
_ACCEPTED = {
    "description": "Stored durably (committed to the outbox) before this answer; `rejected` "
                   "lists the messages of a batch that were not kept, and why.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
}
_ERRORS = {"400": {"description": "Malformed, too large, or no valid message", **_JSON_ERROR},
           "401": {"description": "No or unknown write key, or a wrong signature", **_JSON_ERROR},
           "500": {"description": "An unexpected error; nothing was accepted", **_JSON_ERROR},
           "503": {"description": "The outbox cannot store events now (a full disk, say); nothing "
                                  "was accepted: retry after Retry-After seconds", **_JSON_ERROR}}
_BASIC: list[dict[str, list[str]]] = [{"writeKey": []}]


def _post(summary: str, body: str, responses: dict[str, Any] | None = None,
          secured: bool = True) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}},
            "text/plain": {"schema": {"type": "string", "description": "JSON, as analytics.js sends it"}},
        }},
        "responses": {"200": _ACCEPTED, **_ERRORS, **(responses or {})},
    }
    if secured:
        operation["security"] = _BASIC
    return operation


def _get(summary: str, response: str, secured: bool = False,
         content_type: str = "application/json") -> dict[str, Any]:
    schema: dict[str, Any] = ({"type": "string"} if content_type.startswith("text/")
                              else {"type": "object", "description": response})
    operation: dict[str, Any] = {"summary": summary, "responses": {
        "200": {"description": response, "content": {content_type: {"schema": schema}}}}}
    if secured:
        operation["security"] = _BASIC
        operation["responses"]["401"] = _ERRORS["401"]
    return operation


def openapi_document(*, tester: bool = False) -> dict[str, Any]:
    """The document, as data (with the event tester's routes when it is served)."""
    calls = {"identify": "i", "track": "t", "page": "p", "screen": "s", "group": "g", "alias": "a"}
    paths: dict[str, Any] = {}
    for call, short in calls.items():
        paths[f"/v1/{call}"] = {"post": _post(f"One {call} message", "Message")}
        paths[f"/v1/{short}"] = {"post": _post(f"One {call} message (analytics.js's path)", "Message")}
    for name in ("batch", "import", "b"):
        paths[f"/v1/{name}"] = {"post": _post("A batch of messages (up to 2,500, 500 KB)", "Batch")}
    paths["/v1/preview/{destination}"] = {"post": {
        **_post("The outcomes of one message for the source's settings, secrets redacted", "Message"),
        "parameters": [{"name": "destination", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "Requests or skip reasons",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **_ERRORS, "404": {"description": "The source does not send there", **_JSON_ERROR}},
    }}
    paths["/v1/recorded"] = {"get": {
        **_get("Dry run: the requests recorded for the source", "Recorded requests", secured=True),
        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}}],
    }}
    paths["/v1/dead-letters"] = {"get": {
        **_get("What finally failed for the source: each request, its attempts and the last "
               "answer (secrets redacted)", "Dead letters", secured=True),
        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}}],
    }}
    if tester:
        paths["/tester"] = {"get": _get("The event tester page (config `tester: true`)",
                                        "The page", content_type="text/html")}
        paths["/tester/{file}"] = {"get": {
            **_get("The tester page's script and styles", "tester.js or tester.css",
                   content_type="text/plain"),
            "parameters": [{"name": "file", "in": "path", "required": True,
                            "schema": {"enum": ["tester.js", "tester.css"]}}]}}
        paths["/tester/api/destinations"] = {"get": _get(
            "The source's destinations: call types, settings (no values), rules, a sample event",
            "Destinations", secured=True)}
        tested = {
            "summary": "The outcomes of an event as typed (JSON text), secrets redacted: "
                       "requests and skips with the rule that decided, or where the text is "
                       "not a valid event",
            "security": _BASIC,
            "parameters": [{"name": "destination", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}},
            "responses": {"200": {"description": "Outcomes, or event_error",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          **_ERRORS, "404": {"description": "The source does not send there",
                                             **_JSON_ERROR}},
        }
        paths["/tester/api/preview/{destination}"] = {"post": tested}
    webhook = _post("A Segment Webhooks destination's call: one message or an array (up to 4,000)",
                    "Message", {"404": {"description": "No such source", **_JSON_ERROR}}, secured=False)
    webhook["parameters"] = [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}},
                             {"name": "X-Signature", "in": "header", "schema": {"type": "string"},
                              "description": "Hex HMAC-SHA1 of the whole body (or of an array's first "
                                             "element, for a source with webhook_signature: first_event)"}]
    paths["/webhook/{source}"] = {"post": webhook, "put": webhook, "patch": webhook}
    inbound = _post("Input for an inbound mapping (a partner's reply)", "Message",
                    {"404": {"description": "No such inbound mapping", **_JSON_ERROR}}, secured=False)
    inbound["parameters"] = [{"name": "mapping", "in": "path", "required": True, "schema": {"type": "string"}},
                             {"name": "X-Signature", "in": "header", "schema": {"type": "string"}}]
    paths["/inbound/{mapping}"] = {"post": inbound}
    health = _get("Liveness, and the outbox's counts", "Alive")
    health["responses"]["503"] = {"description": "The outbox cannot be read, or its last commit "
                                                 "failed: the problem, with Retry-After"}
    paths["/health"] = {"get": health}
    ready = _get("Readiness: 503 while shutting down, the store unreadable, or its disk full", "Ready")
    ready["responses"]["503"] = {"description": "Not ready, with the reasons"}
    paths["/ready"] = {"get": ready}
    paths["/metrics"] = {"get": _get("Prometheus metrics", "Prometheus' text exposition format",
                                     content_type="text/plain")}
    paths["/openapi.json"] = {"get": _get("This document", "OpenAPI 3.1")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "engine: Segment's tracking API, routed to destinations", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"writeKey": {
                "type": "http", "scheme": "basic",
                "description": "The source's write key as the username (or `writeKey` in the body)"}},
            "schemas": {
                "Message": {"type": "object", "description": "A Segment spec message",
                            "properties": {"type": {"type": "string"}, "userId": {"type": "string"},
                                           "anonymousId": {"type": "string"},
                                           "messageId": {"type": "string"},
                                           "writeKey": {"type": "string"}}},
                "Batch": {"type": "object", "required": ["batch"], "properties": {
                    "batch": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                    "context": {"type": "object"}, "integrations": {"type": "object"},
                    "sentAt": {"type": "string"}, "writeKey": {"type": "string"}}},
                "Accepted": {"type": "object", "properties": {
                    "success": {"const": True},
                    "rejected": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "message": {"type": "string"}}}},
                    "results": {"type": "array", "items": {"type": "object"}}}},
                "Error": {"type": "object", "required": ["success", "code", "message"], "properties": {
                    "success": {"const": False}, "code": {"type": "string"},
                    "message": {"type": "string"}}},
            },
        },
    }
