"""Read a YAML file into plain data plus a map from each value's path to its position.

PyYAML is used to compose the node graph; values are built here so that every mapping key
and value keeps its line and column, duplicate keys are caught (PyYAML keeps the last one
silently), and the YAML 1.1 traps that turn a template field into something else are named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.reader import ReaderError

from ..errors import EngineError, Location, Problem

__all__ = ["SourceDocument", "Path_", "read_yaml"]

Path_ = tuple[Any, ...]
"""A path into a YAML document: keys and list indexes, e.g. ("rules", 0, "body", "event")."""

# Alias expansion can make a small file describe an enormous tree ("billion laughs").
_MAX_NODES = 200_000

# libyaml's parser (5x faster on the shipped files) where PyYAML was built with it.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 100
"""How deeply collections may nest in a YAML file: PyYAML composes recursively, and a file
of ten thousand `[` would take Python past its recursion limit."""

_OPENS = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
          yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_SCANNER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML has it

_ECHO_LIMIT = 12
"""Values longer than this are not repeated in messages."""
_CANONICAL_BOOLS = {"true", "false", "True", "False", "TRUE", "FALSE"}
_SUSPICIOUS_INT = re.compile(r"^[-+]?(0[0-9_]+|0[bx].*|.*[:_].*)$")


@dataclass
class SourceDocument:
    """A parsed YAML file: its data and where each piece of it stands in the file."""

    path: str
    text: str
    data: Any
    values: dict[Path_, Location] = field(default_factory=dict)
    keys: dict[Path_, Location] = field(default_factory=dict)
    styles: dict[Path_, str | None] = field(default_factory=dict)

    def locate(self, path: Path_, *, key: bool = False) -> Location:
        """The position of `path` (its key when `key`), or of its nearest ancestor."""
        table = self.keys if key else self.values
        while True:
            if path in table:
                return table[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return Location(self.path, 1, 1)
            path = path[:-1]


class _Builder:
    def __init__(self, doc: SourceDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.count = 0
        self._scalars = yaml.SafeLoader("")

    def loc(self, mark: yaml.Mark) -> Location:
        return Location(self.doc.path, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise _TooLarge()
        self.doc.values[path] = self.loc(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        if node.flow_style and node.value and isinstance(node.value[0][0], yaml.MappingNode):
            # `key: {{ x }}` parses as a mapping whose key is a mapping.
            self.problems.append(Problem(self.loc(node.start_mark),
                "unquoted template: YAML reads '{{' as a nested mapping; quote the value, "
                "e.g. \"{{ traits.email }}\""))
            return {}
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(Problem(self.loc(key_node.start_mark),
                    "merge keys ('<<') are not supported; use 'extends' to share a base file"))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(self.loc(key_node.start_mark),
                    "a mapping key must be a plain string"))
                continue
            key = self._scalar(key_node, path + ("<key>",))
            if isinstance(key, (bool, int, float)) and not key_node.style:
                key = key_node.value  # keys are names: `200: x` means the string "200"
            if key in result:
                self.problems.append(Problem(self.loc(key_node.start_mark),
                    f"duplicate key '{key}' (the first is at line "
                    f"{self.doc.keys[path + (key,)].line})"))
                continue
            self.doc.keys[path + (key,)] = self.loc(key_node.start_mark)
            result[key] = self.build(value_node, path + (key,))
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        style = node.style or None  # libyaml says '' for a plain scalar, PyYAML None
        self.doc.styles[path] = style
        if style is None:  # plain scalars are where YAML 1.1 guesses types
            trap = self._trap(node)
            if trap:
                self.problems.append(Problem(self.loc(node.start_mark), trap))
                return node.value
        try:
            value = self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):  # `!!float abc`
            # Not what PyYAML says: it repeats the value, which may be a write key.
            tag = node.tag.rsplit(":", 1)[-1]
            self.problems.append(Problem(self.loc(node.start_mark),
                                         f"cannot read value: it is not a valid {tag}"))
            return node.value
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            # `!!binary`, `!!set`, ...: nothing a request or a setting can hold as JSON.
            self.problems.append(Problem(self.loc(node.start_mark),
                                         f"a {type(value).__name__} value (from a YAML tag) has no "
                                         "place here: write text, a number, true/false or null"))
            return node.value
        return value

    @staticmethod
    def _trap(node: yaml.ScalarNode) -> str | None:
        text, tag = node.value, node.tag
        # A long value may be a secret (a write key in a configuration): not repeated.
        shown = f"'{text}'" if len(text) <= _ECHO_LIMIT else f"this value ({len(text)} characters)"
        quoted = f": \"{text}\"" if len(text) <= _ECHO_LIMIT else ""
        if tag == "tag:yaml.org,2002:bool" and text not in _CANONICAL_BOOLS:
            return (f"{shown} is read by YAML 1.1 as the boolean "
                    f"{str(text.lower() in {'yes', 'on', 'y'}).lower()}; "
                    f"write true/false, or quote it if you mean the text {shown}")
        if tag == "tag:yaml.org,2002:int" and _SUSPICIOUS_INT.match(text):
            return (f"{shown} is read by YAML 1.1 as a number that is not what it looks like "
                    f"(leading zero, base prefix or sexagesimal); quote it{quoted}")
        if tag == "tag:yaml.org,2002:timestamp":
            return f"{shown} is read by YAML as a date, not text; quote it{quoted}"
        if tag == "tag:yaml.org,2002:float" and (":" in text or "_" in text):
            return f"{shown} is read by YAML 1.1 as a float; quote it{quoted}"
        return None


class _TooLarge(EngineError):
    pass


MAX_FILE_BYTES = 1_000_000
"""The largest mapping or configuration file read (the shipped ones are ~10 KB)."""


def read_yaml(path: str | Path) -> tuple[SourceDocument, list[Problem]]:
    """Parse one YAML file; return the document and every problem found while reading it.
    Only a regular file of at most MAX_FILE_BYTES is read (not /dev/zero, say)."""
    name = str(path)
    try:
        if Path(path).exists() and not Path(path).is_file():  # a device or a pipe: never read
            raise OSError("not a regular file")
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise OSError(f"larger than {MAX_FILE_BYTES:,} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return SourceDocument(name, "", None), [Problem(Location(name, 1, 1), f"cannot read file: {reason}")]
    return parse_yaml(text, name)


def _too_deep(text: str, name: str, scanner: Any = None) -> Problem | None:
    """Where the text nests past MAX_DEPTH, read with a YAML scanner (which does not
    recurse) before anything that does; None if it does not (or cannot be scanned: then
    composing it says why)."""
    depth = 0
    try:
        for token in yaml.scan(text, Loader=scanner or _SCANNER):
            if isinstance(token, _OPENS):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = token.start_mark
                    return Problem(Location(name, mark.line + 1, mark.column + 1),
                                   f"YAML nested more than {MAX_DEPTH} levels deep")
            elif isinstance(token, _CLOSES):
                depth -= 1
    except yaml.YAMLError:
        # libyaml reads ahead and stops at its own depth limit (1,000) before saying where
        # ours was passed; PyYAML's own scanner, slower, says it (or finds the file wrong).
        if scanner is None and _SCANNER is not yaml.SafeLoader:
            return _too_deep(text, name, yaml.SafeLoader)
    return None


_UNREAD: Any = object()
"""libyaml could not read the text (parse_yaml reads it again with PyYAML)."""


def _deeper_than(node: yaml.Node, limit: int) -> bool:
    """Whether collections nest more than `limit` deep in a composed tree (without
    recursion; a node an alias repeats is walked again only when it is met deeper)."""
    seen: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int]] = [(node, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, yaml.ScalarNode):
            continue
        depth += 1
        if depth > limit:
            return True
        if seen.get(id(item), 0) >= depth:
            continue
        seen[id(item)] = depth
        if isinstance(item, yaml.MappingNode):
            stack += [(part, depth) for pair in item.value for part in pair]
        else:
            stack += [(child, depth) for child in item.value]
    return False


def parse_yaml(text: str, name: str) -> tuple[SourceDocument, list[Problem]]:
    """Parse YAML text that came from `name` (used in locations)."""
    doc = SourceDocument(name, text, None)
    try:
        node = _UNREAD
        if _LOADER is not yaml.SafeLoader:
            try:
                # libyaml composes without Python recursion (and stops at its own depth
                # limit): the depth is looked at in the tree it made, and the text is
                # scanned for where it passed MAX_DEPTH only when it did.
                node = yaml.compose(text, Loader=_LOADER)
            except yaml.YAMLError:
                # Errors are rare and PyYAML's own parser words them better ("expected ','
                # or ']', but got ':'"): the file is read again with it, for the message.
                pass
        if node is _UNREAD or node is not None and _deeper_than(node, MAX_DEPTH):
            # PyYAML composes recursively: the text is scanned for its depth first.
            deep = _too_deep(text, name)
            if deep is not None:
                return doc, [deep]
        if node is _UNREAD:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        return doc, [Problem(Location(name, 1, 1), "YAML nested too deeply to read")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return doc, [Problem(where, f"YAML syntax error: {what}")]
    except ReaderError as exc:  # a character YAML does not allow (a control character)
        before = text[:exc.position]
        where = Location(name, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        return doc, [Problem(where, f"YAML error: {exc.reason} (character #x{exc.character:04x})"
                             if isinstance(exc.character, int) else f"YAML error: {exc.reason}")]
    except yaml.YAMLError as exc:
        return doc, [Problem(Location(name, 1, 1), "YAML error: " + " ".join(str(exc).split()))]
    if node is None:
        return doc, [Problem(Location(name, 1, 1), "the file is empty")]
    builder = _Builder(doc)
    try:
        doc.data = builder.build(node, ())
    except _TooLarge:
        return doc, [Problem(Location(name, 1, 1),
                             f"the document expands to more than {_MAX_NODES} nodes (aliases?)")]
    except RecursionError:
        return doc, [Problem(Location(name, 1, 1), "YAML nested too deeply to read")]
    return doc, builder.problems
