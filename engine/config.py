"""The configuration file shared by delivery and the HTTP shim.

```yaml
mappings: mappings              # directory of mapping files
store: var/outbox.sqlite3       # the durable outbox: a SQLite file, or a PostgreSQL URL
                                # (postgresql://user:${PG_PASSWORD}@host:5432/db)
dry_run: false                  # true: record mapped requests instead of sending them
tester: false                   # true: serve the event tester page at /tester (development)
delivery: {timeout: 10, backoff_initial: 1, backoff_max: 300, max_attempts: 25,
           max_age: 14400, concurrency: 8}
sources:
  - name: web
    write_key: ${WEB_WRITE_KEY}
    destinations:
      calixa: {api_key: ${CALIXA_API_KEY}, endpoint: "https://..."}
```

`${NAME}` (or `${NAME:-default}`) is replaced by the environment variable, so that secrets
stay out of the file. Every problem is reported as `file:line:col: message`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping

from cerberus import Validator

from .errors import ConfigError, Location, Problem, SettingsError
from .mapping.destination import BoundDestination, Destination
from .mapping.loader import SHIPPED_MAPPINGS, check
from .mapping.schema import flatten_errors
from .mapping.yaml_reader import SourceDocument, read_yaml
from .store import PostgresStore, Store, parse_store

__all__ = ["Config", "DeliveryConfig", "SourceConfig", "InboundConfig", "Source", "load_config",
           "RESERVED_SOURCE_NAMES", "MAX_WEBHOOK_BODY"]

RESERVED_SOURCE_NAMES = frozenset({"inbound"})
"""Names no source may take: "inbound" marked inbound jobs in outboxes written before inbound
mappings were sources of their own (such jobs are still delivered with their mapping's
settings)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
WebhookSignature = Literal["body", "first_event"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class DeliveryConfig:
    """How requests are delivered. Times are in seconds."""

    timeout: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    max_attempts: int = 25
    max_age: float = 4 * 3600.0  # Segment retries for up to four hours
    concurrency: int = 8


@dataclass(frozen=True)
class SourceConfig:
    """A Segment source: its write key, and the settings of each destination it sends to.
    Its messages arrive through the tracking API, its webhook, or `engine enqueue`."""

    name: str
    write_key: str
    destinations: Mapping[str, Mapping[str, Any]]
    webhook_secret: str | None = None
    webhook_signature: WebhookSignature = "body"
    """What X-Signature signs: the whole body (the default), or, for a batch, its first event
    alone ("first_event", as Segment's Actions Webhooks sign batches: weaker, see README)."""
    webhook_max_body: int = 16 * 1024 * 1024
    """The largest webhook body taken, in bytes (after decompression too)."""
    kind: ClassVar[str] = "segment"


@dataclass(frozen=True)
class InboundConfig:
    """An inbound source: replies a partner sends back (e.g. Callexa's survey answers),
    read by one `input: raw` mapping and served at POST /inbound/{slug}. It is named after
    that mapping; `secret` signs its requests (X-Signature), if set."""

    slug: str
    settings: Mapping[str, Any]
    secret: str | None = None
    kind: ClassVar[str] = "inbound"

    @property
    def name(self) -> str:
        return self.slug

    @property
    def destinations(self) -> Mapping[str, Mapping[str, Any]]:
        """The one mapping it feeds, with its settings."""
        return {self.slug: self.settings}


Source = SourceConfig | InboundConfig
"""Where events come from: what the intake accepts them for."""


@dataclass
class Config:
    """A loaded, checked configuration with its compiled destinations."""

    path: str
    mappings: Path
    store: Store
    """The outbox: a SQLite file, or a PostgreSQL database (its password never shown)."""
    dry_run: bool
    delivery: DeliveryConfig
    sources: list[SourceConfig]
    destinations: dict[str, Destination] = field(default_factory=dict)
    inbound: dict[str, InboundConfig] = field(default_factory=dict)
    trusted_proxies: tuple[IPNetwork, ...] = ()
    """Addresses whose X-Forwarded-For is believed, to find a client's IP (see client_ip)."""
    cors_origins: tuple[str, ...] = ("*",)
    """Origins whose pages may call the tracking API from a browser (analytics.js); "*":
    any page, as a write key is public anyway."""
    tester: bool = False
    """Serve the event tester page (/tester) and its API, behind each source's write key:
    for development (docs/dev-config.yaml turns it on), off unless asked for."""
    _bound: dict[tuple[str, str, int], BoundDestination] = field(default_factory=dict, init=False,
                                                                 repr=False)

    def bound(self, source: str, destination: str) -> BoundDestination | None:
        """`destination` bound to `source`'s settings for it (None when either is not
        configured): checked and rendered once per pair, since settings do not change while
        a configuration is loaded. Raises SettingsError for settings that fail the schema."""
        compiled = self.destinations.get(destination)
        settings = self.settings(source, destination)
        if compiled is None or settings is None:
            return None
        key = (source, destination, id(compiled))  # a replaced mapping is bound anew
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bound[key] = compiled.bind(settings)
        return bound

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: the connecting `peer`, or, when it is a trusted proxy, the
        nearest address in X-Forwarded-For that is not one (walking from the right, as each
        proxy appends the address it saw)."""
        if peer is None or forwarded_for is None or not self._trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop if _is_ip(hop) else peer
        return hops[0] if hops and _is_ip(hops[0]) else peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener's view of an IPv4 proxy
        return any(ip in network for network in self.trusted_proxies)

    def source(self, name: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.name == name), None)

    def source_for_key(self, write_key: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.write_key == write_key), None)

    def any_source(self, name: str) -> Source | None:
        """The Segment or inbound source called `name`."""
        return self.source(name) or self.inbound.get(name)

    def settings(self, source: str, destination: str) -> Mapping[str, Any] | None:
        """The current settings of `destination` for `source` (None if not configured)."""
        if source in RESERVED_SOURCE_NAMES:  # an inbound job stored by an older version
            legacy = self.inbound.get(destination)
            return None if legacy is None else legacy.settings
        found = self.any_source(source)
        return None if found is None else found.destinations.get(destination)

    def secrets(self) -> list[str]:
        """Every secret value in the configuration: write keys, secret settings, and the
        store's password."""
        values: list[str] = []
        if isinstance(self.store, PostgresStore):
            values += self.store.secret_values()
        for source in self.sources:
            values.append(source.write_key)
            if source.webhook_secret:
                values.append(source.webhook_secret)
            for slug, settings in source.destinations.items():
                if slug in self.destinations:
                    values += self.destinations[slug].secret_values(settings)
        for inbound in self.inbound.values():
            values.append(inbound.secret or "")
            if inbound.slug in self.destinations:
                values += self.destinations[inbound.slug].secret_values(inbound.settings)
        return [v for v in values if v]


_POSITIVE = {"type": "number", "min": 0}
SCHEMA = {
    "mappings": {"type": "string", "default": "mappings"},
    "store": {"type": "string", "default": "var/outbox.sqlite3"},
    "dry_run": {"type": "boolean", "default": False},
    "tester": {"type": "boolean", "default": False},
    "trusted_proxies": {"type": "list", "default": [], "schema": {"type": "string"}},
    "cors": {"type": "dict", "default": {}, "schema": {
        "allow_origins": {"type": "list", "schema": {"type": "string", "empty": False}},
    }},
    "delivery": {"type": "dict", "default": {}, "schema": {
        "timeout": {**_POSITIVE, "min": 0.001},
        "backoff_initial": _POSITIVE,
        "backoff_max": _POSITIVE,
        "max_attempts": {"type": "integer", "min": 1},
        "max_age": _POSITIVE,
        "concurrency": {"type": "integer", "min": 1, "max": 1000},
    }},
    "sources": {"type": "list", "default": [], "schema": {"type": "dict", "schema": {
        "name": {"type": "string", "required": True, "regex": r"[A-Za-z0-9_.-]+"},
        "write_key": {"type": "string", "required": True, "empty": False},
        "webhook_secret": {"type": "string", "nullable": True},
        "webhook_signature": {"type": "string", "allowed": ["body", "first_event"],
                              "default": "body"},
        "webhook_max_body": {"type": ["integer", "string"], "default": "16 MB"},
        "destinations": {"type": "dict", "default": {},
                         "valuesrules": {"type": "dict"}},
    }}},
    "inbound": {"type": "dict", "default": {}, "valuesrules": {"type": "dict", "schema": {
        "settings": {"type": "dict", "default": {}},
        "secret": {"type": "string", "nullable": True},
    }}},
}


def _interpolate(value: Any, path: tuple[Any, ...], doc: SourceDocument,
                 problems: list[Problem], env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, path + (k,), doc, problems, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path + (i,), doc, problems, env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(Problem(doc.locate(path), f"environment variable {name} is not set"))
        return ""
    return _ENV.sub(replace, value)


MAX_WEBHOOK_BODY = 128 * 1024 * 1024
"""The largest webhook_max_body allowed: Segment's Actions Webhooks batch up to 4,000 events,
32 KB each at the most."""
_SIZE = re.compile(r"\s*(\d+)\s*(KB|MB|B)?\s*", re.IGNORECASE)


def _size(value: Any) -> int | None:
    """A size in bytes: an integer, or text like "512 KB" or "16 MB" (KB = 1,024 bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    return int(match.group(1)) * {"kb": 1024, "mb": 1024 * 1024}.get((match.group(2) or "").lower(), 1)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and check a configuration file; load the mappings it names and
    check each source's destination settings. Raises ConfigError listing every problem."""
    doc, problems = read_yaml(path)
    if problems:
        raise ConfigError(problems)
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(Location(doc.path, 1, 1), "the configuration must be a YAML mapping")])
    data = _interpolate(doc.data, (), doc, problems, os.environ if env is None else env)
    if problems:  # an unset variable would also show up below as an empty value
        raise ConfigError(problems)
    validator = Validator(SCHEMA)
    if not validator.validate(data):
        for where, message, unknown in flatten_errors(validator.errors):
            problems.append(Problem(doc.locate(where, key=unknown), message))
    if problems:
        raise ConfigError(problems)
    data = validator.document
    base = Path(doc.path).parent
    # Relative paths are relative to the configuration file, wherever it is run from.
    mappings = (base / data["mappings"]).resolve()
    if "mappings" not in doc.data and not mappings.is_dir():  # not set, and none beside it
        mappings = SHIPPED_MAPPINGS
    try:
        store = parse_store(data["store"], base)
    except ValueError as exc:
        raise ConfigError([Problem(doc.locate(("store",)), str(exc))]) from None
    destinations, mapping_problems = check([mappings])
    if mapping_problems:
        raise ConfigError(mapping_problems)
    sources = []
    names: set[str] = set()
    keys: set[str] = set()
    for i, raw in enumerate(data["sources"]):
        where = ("sources", i)
        if raw["name"] in names:
            problems.append(Problem(doc.locate(where + ("name",)), f"duplicate source name '{raw['name']}'"))
        if raw["write_key"] in keys:
            problems.append(Problem(doc.locate(where + ("write_key",)), "two sources share a write key"))
        names.add(raw["name"])
        keys.add(raw["write_key"])
        for slug, settings in raw["destinations"].items():
            dest_path = where + ("destinations", slug)
            if slug not in destinations:
                known = ", ".join(sorted(destinations)) or "none"
                problems.append(Problem(doc.locate(dest_path, key=True),
                                        f"unknown destination '{slug}' (known: {known})"))
                continue
            try:
                destinations[slug].bind(settings)
            except SettingsError as exc:
                for message in exc.messages:
                    problems.append(Problem(doc.locate(dest_path, key=True),
                                            f"source '{raw['name']}', {slug}: {message}"))
        if raw["webhook_signature"] != "body" and not raw.get("webhook_secret"):
            problems.append(Problem(doc.locate(where + ("webhook_signature",)),
                                    "webhook_signature needs a webhook_secret to check"))
        max_body = _size(raw["webhook_max_body"])
        if max_body is None or not 1024 <= max_body <= MAX_WEBHOOK_BODY:
            problems.append(Problem(doc.locate(where + ("webhook_max_body",)),
                                    f"webhook_max_body must be a size from 1 KB to 128 MB "
                                    f"(like 512 KB, 16 MB, or bytes), got {raw['webhook_max_body']!r}"))
            max_body = SourceConfig.webhook_max_body
        sources.append(SourceConfig(raw["name"], raw["write_key"], raw["destinations"],
                                    raw.get("webhook_secret"), raw["webhook_signature"], max_body))
    inbound = {}
    for slug, raw in data["inbound"].items():
        where = ("inbound", slug)
        destination = destinations.get(slug)
        if destination is None or destination.input != "raw":
            raw_ones = ", ".join(sorted(d for d, m in destinations.items() if m.input == "raw")) or "none"
            problems.append(Problem(doc.locate(where, key=True),
                                    f"'{slug}' is not an inbound (input: raw) mapping (those: {raw_ones})"))
            continue
        try:
            destination.bind(raw["settings"])
        except SettingsError as exc:
            problems += [Problem(doc.locate(where, key=True), f"inbound {slug}: {m}") for m in exc.messages]
        inbound[slug] = InboundConfig(slug, raw["settings"], raw.get("secret"))
    for i, source in enumerate(sources):
        # Jobs are stored under their source's name: two sources must never share one.
        if source.name in RESERVED_SOURCE_NAMES:
            problems.append(Problem(doc.locate(("sources", i, "name")),
                                    f"'{source.name}' is a reserved source name; pick another"))
        elif source.name in inbound:
            problems.append(Problem(doc.locate(("sources", i, "name")),
                                    f"source name '{source.name}' is taken by the inbound mapping "
                                    f"of that name; pick another"))
    trusted: list[IPNetwork] = []
    for i, text in enumerate(data["trusted_proxies"]):
        try:
            trusted.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            problems.append(Problem(doc.locate(("trusted_proxies", i)),
                                    f"'{text}' is not an IP address or network (like 10.0.0.0/8)"))
    if problems:
        raise ConfigError(problems)
    defaults = DeliveryConfig()
    delivery = DeliveryConfig(**{k: data["delivery"].get(k, getattr(defaults, k))
                                 for k in defaults.__dataclass_fields__})
    return Config(doc.path, mappings, store, data["dry_run"], delivery, sources, destinations, inbound,
                  tuple(trusted), tuple(data["cors"].get("allow_origins", ["*"])), data["tester"])
