"""The starter mapping file `engine init` writes: one rule, a settings schema and one example,
commented, valid, and passing `engine test` as written (tests/cli hold it to that)."""

from __future__ import annotations

import json

__all__ = ["starter_file"]

# Placeholders are replaced as text (the file itself is full of Jinja braces).
_STARTER = """\
# yaml-language-server: $schema=@SCHEMA@
# @NAME@: one line on what the destination does with the events it gets.
# API: the page of @NAME@'s API documentation this file follows (put its address in `docs`).
# Written by `engine init`; docs/authoring.md walks from here to a tested file:
#   engine validate @FILE@   (every problem, as file:line:col)
#   engine test @FILE@       (the examples against their snapshots; --update writes them)
#   engine describe @SLUG@   (what the people who configure it will see)
# The name in a message's integrations object, and the slug: how commands, the shim and
# snapshots/examples/@SLUG@/ name it (`engine map --destination @SLUG@`).
destination: @NAME_VALUE@
slug: @SLUG@
docs: https://api.example.com/docs
description: @DESCRIPTION@
accepts: [track]                  # the call types taken; the others are skipped, saying so

settings:                         # what each configuration gives (checked before any event)
  api_key:
    type: string
    required: true
    secret: true                  # for `auth` (and `auth_query`, the url): never stored or shown
    description: @KEY_DESCRIPTION@
  endpoint:
    type: string
    default: https://api.example.com/v1/events
    description: Where events are sent.

request:                          # the defaults every rule's request inherits
  method: POST
  url: "{{ settings.endpoint }}"
  encoding: json                  # or form
  auth:                           # headers made from secret settings, rendered at send time
    Authorization: "Bearer {{ settings.api_key }}"

rules:                            # tried in order; the first that matches decides
  - name: track
    description: Each track call becomes one event.
    when: {type: track}           # also: event names, a JMESPath condition, an `if`
    request:
      body:                       # a YAML tree; each string leaf is a Jinja template
        event: "{{ event }}"
        user_id: "{{ userId }}"               # a missing value drops its key
        anonymous_id: "{{ anonymousId }}"
        properties: "{{ properties }}"        # one expression keeps its type
        time: "{{ timestamp | unix }}"        # seconds since 1970
        message_id: "{{ messageId }}"

examples:                         # each one has a snapshot, written by `engine test --update`
  - name: "Track: analytics.track('Signed Up', {plan: 'pro'})"
    source: the page of the API docs the example comes from
    settings: {api_key: demo-api-key}
    now: "2024-01-15T10:00:00Z"   # a fixed clock, so that the outcome repeats
    event:
      type: track
      event: Signed Up
      userId: u1
      properties: {plan: pro}
      timestamp: "2024-01-15T10:00:00Z"
      messageId: m1
    expect:                       # optional: what the API docs say it must get
      - request:
          method: POST
          url: https://api.example.com/v1/events
          headers: {Authorization: "[redacted]", Content-Type: application/json}
          json: {event: Signed Up, user_id: u1, properties: {plan: pro}, time: 1705312800, message_id: m1}
"""


def starter_file(slug: str, name: str, schema: str, file: str) -> str:
    """The starter file for destination `slug` called `name`; `schema` is where the YAML
    language server finds the JSON Schema, `file` how the commands in its comments name it."""
    text = _STARTER
    values = {  # YAML values quoted as JSON (a YAML string too), whatever the name holds
        "@NAME_VALUE@": json.dumps(name, ensure_ascii=False),
        "@DESCRIPTION@": json.dumps(f"What {name} receives, for the people who configure it.",
                                    ensure_ascii=False),
        "@KEY_DESCRIPTION@": json.dumps(f"The API key, from {name}'s account settings.",
                                        ensure_ascii=False),
        "@SCHEMA@": schema, "@NAME@": name, "@SLUG@": slug, "@FILE@": file,
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text
