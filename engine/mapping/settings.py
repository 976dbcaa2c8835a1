"""A destination's settings: declared in its file, checked with Cerberus, secrets marked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from cerberus import SchemaError, Validator
from cerberus import errors as cerberus_errors

from ..errors import SettingsError
from ..redact import redact
from .functions import REGEX_TIMEOUT, compile_regex

__all__ = ["SettingsSchema"]

_ENGINE_KEYS = {"secret", "description"}


class _SettingsValidator(Validator):  # type: ignore[misc]  # cerberus is untyped
    """Cerberus, with `regex` run by the `regex` module and stopped in time: a mapping file
    may come from someone we do not trust, and `(a+)+$` must not hold the process."""

    def _validate_regex(self, pattern: str, field: str, value: Any) -> None:
        """{'type': 'string'}"""
        if not isinstance(value, str):
            return
        try:
            matched = compile_regex(pattern).fullmatch(value, timeout=REGEX_TIMEOUT)
        except TimeoutError:
            self._error(field, f"the pattern {pattern!r} took too long on this value")
            return
        if matched is None:
            self._error(field, cerberus_errors.REGEX_MISMATCH)


@dataclass(frozen=True)
class SettingsSchema:
    """The declared settings of one destination."""

    destination: str
    spec: Mapping[str, Mapping[str, Any]]

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(n for n, s in self.spec.items() if s.get("secret"))

    def cerberus_schema(self) -> dict[str, Any]:
        schema = {}
        for name, spec in self.spec.items():
            rule = {k: v for k, v in spec.items() if k not in _ENGINE_KEYS}
            if rule.get("type") == "float":
                rule["type"] = "number"
            schema[name] = rule
        return schema

    def schema_problem(self, name: str) -> str | None:
        """Why setting `name`'s rules (its `schema` of items, say) are not valid Cerberus
        rules, or None."""
        try:
            _SettingsValidator({name: self.cerberus_schema()[name]})
        except SchemaError as exc:
            return f"not valid setting rules: {' '.join(str(exc).split())}"
        return None

    def validate(self, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return the settings with defaults filled in, or raise SettingsError naming each
        problem (a missing required setting is named). Secret values never appear in it."""
        validator = _SettingsValidator(self.cerberus_schema(), allow_unknown=False)
        if validator.validate(dict(settings or {}), normalize=True):
            checked: dict[str, Any] = validator.document
            return checked
        messages = []
        for name, errors in sorted(validator.errors.items()):
            for error in errors:
                text = error if isinstance(error, str) else str(error)
                if text == "required field":
                    messages.append(f"missing required setting '{name}'")
                elif text == "unknown field":
                    known = ", ".join(sorted(self.spec)) or "none"
                    messages.append(f"unknown setting '{name}' (known: {known})")
                else:
                    messages.append(f"setting '{name}': {text}")
        secrets = [v for k, v in (settings or {}).items() if k in self.secret_names]
        raise SettingsError(self.destination, redact(messages, secrets))

    def coerce(self, name: str, text: str) -> Any:
        """Turn a command-line `KEY=VALUE` value into the declared type."""
        if name not in self.spec:
            known = ", ".join(sorted(self.spec)) or "none"
            raise SettingsError(self.destination, [f"unknown setting '{name}' (known: {known})"])
        kind = self.spec[name].get("type")
        try:
            if kind == "integer":
                return int(text)
            if kind in ("float", "number"):
                return float(text) if any(c in text for c in ".eE") else int(text)
            if kind == "boolean":
                lowered = text.strip().lower()
                if lowered in ("true", "1", "yes", "on"):
                    return True
                if lowered in ("false", "0", "no", "off"):
                    return False
                raise ValueError(text)
            if kind in ("dict", "list"):
                return json.loads(text)
        except ValueError:
            raise SettingsError(self.destination,
                                [f"setting '{name}' must be a {kind}, got {text!r}"]) from None
        return text
