"""Find mapping files, resolve `extends`, compile them, and collect every problem."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

from .compiler import SourceView, compile_destination
from .destination import Destination, generated_by_default
from ..errors import Location, MappingError, Problem
from .schema import check_document
from .yaml_reader import SourceDocument, read_yaml

__all__ = ["load", "check", "mapping_files", "default_mappings", "SHIPPED_MAPPINGS"]

SHIPPED_MAPPINGS = Path(__file__).resolve().parent.parent / "shipped_mappings"
"""The mapping files that come with the package (the repository's mappings/)."""


def default_mappings() -> Path:
    """`mappings/` in the working directory when there is one (a checkout, or a deployment's
    own files), else the mappings shipped with the package."""
    here = Path("mappings")
    return here if here.is_dir() else SHIPPED_MAPPINGS

# What a file takes from the file it extends: everything but its identity and examples.
_NOT_INHERITED = {"destination", "slug", "docs", "description", "abstract", "examples", "extends"}


def mapping_files(paths: Iterable[str | Path]) -> list[Path]:
    """The .yaml/.yml files named, and those inside the directories named, sorted."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            found.append(path)
    return found


def _merge(base: Any, own: Any) -> Any:
    if isinstance(base, dict) and isinstance(own, dict):
        merged = dict(base)
        for key, value in own.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return own


def _resolve(doc: SourceDocument, problems: list[Problem],
             chain: tuple[str, ...] = ()) -> tuple[Any, list[SourceDocument], bool]:
    """Return the document's data merged over what it extends, the documents involved, and
    whether it could be merged (False: an `extends` that cannot be followed)."""
    data = doc.data
    if not isinstance(data, dict) or "extends" not in data:
        return data, [doc], True
    target = data["extends"]
    where = doc.keys.get(("extends",), Location(doc.path, 1, 1))
    if not isinstance(target, str):
        problems.append(Problem(where, "'extends' must be a file name"))
        return data, [doc], False
    home = Path(doc.path).parent.resolve()
    base_path = (home / target).resolve()
    if not base_path.is_relative_to(home):  # a mapping file may not read the machine's files
        problems.append(Problem(where, f"'extends' names a file beside this one or below it; "
                                       f"'{target}' is elsewhere"))
        return data, [doc], False
    if str(base_path) in chain:
        problems.append(Problem(where, f"'extends' makes a cycle: {' -> '.join(chain + (str(base_path),))}"))
        return data, [doc], False
    base_doc, base_problems = read_yaml(base_path)
    base_doc.path = str(Path(doc.path).parent / target)
    for p in base_problems:
        problems.append(Problem(Location(base_doc.path, p.location.line, p.location.column), p.message))
    if base_doc.data is None:
        if not base_problems:
            problems.append(Problem(where, f"cannot extend '{target}': it is empty"))
        return data, [doc], False
    for path, message, unknown in check_document(base_doc.data, abstract=True):
        problems.append(Problem(base_doc.locate(path, key=unknown), message))
    if not isinstance(base_doc.data, dict):
        return data, [doc], False  # the problem is reported just above, in the base
    base_data, base_docs, merged = _resolve(base_doc, problems, chain + (str(Path(doc.path).resolve()),))
    if not merged or not isinstance(base_data, dict):
        return data, [doc], False
    inherited = {k: v for k, v in base_data.items() if k not in _NOT_INHERITED}
    return _merge(inherited, data), [doc] + base_docs, True


def _load_one(path: Path) -> tuple[Destination | None, list[Problem], bool]:
    """Every problem of one file, whatever stage finds it: reading (a YAML trap leaves the
    rest readable), `extends`, the schema and the compiler. Only a file that cannot be read
    as YAML at all, or whose base cannot be, stops early. A later stage does not report
    again a place an earlier one did (an unquoted template is not also "not a string")."""
    doc, problems = read_yaml(path)
    if doc.data is None:
        return None, problems, False
    data, docs, merged = _resolve(doc, problems)
    if not merged:
        return None, problems, False
    if isinstance(data, dict) and data.get("abstract") is True:
        found = [Problem(doc.locate(p, key=u), m) for p, m, u in check_document(data, abstract=True)]
        return None, _after(problems, found), True
    key = (generated_by_default(), tuple((d.path, d.text) for d in docs))
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        destination, compiled_problems = _COMPILED[key]
    else:
        destination, found = compile_destination(data, SourceView(docs))
        compiled_problems = tuple(found)
        _COMPILED[key] = (destination, compiled_problems)
        if len(_COMPILED) > _COMPILED_LIMIT:
            _COMPILED.popitem(last=False)
    problems = _after(problems, list(compiled_problems))
    return (None if problems else destination), problems, False


# Compiling (templates, JMESPath, the generated functions) is most of loading a file, and its
# result depends only on the files' names and texts: a process that loads the same files again
# (a configuration reloaded, a test suite) compiles them once. A Destination is not changed
# after it is compiled, so one can be shared.
_COMPILED: OrderedDict[tuple[Any, ...], tuple[Destination | None, tuple[Problem, ...]]] = OrderedDict()
_COMPILED_LIMIT = 64


def _after(earlier: list[Problem], later: list[Problem]) -> list[Problem]:
    places = {p.location for p in earlier}
    return earlier + [p for p in later if p.location not in places]


def check(paths: Iterable[str | Path]) -> tuple[dict[str, Destination], list[Problem]]:
    """Load every mapping file under `paths`; return the destinations and all problems."""
    destinations: dict[str, Destination] = {}
    problems: list[Problem] = []
    files = mapping_files(paths)
    for path in files:
        if not path.exists():
            problems.append(Problem(Location(str(path), 1, 1), "no such file or directory"))
            continue
        destination, found, _abstract = _load_one(path)
        problems += found
        if destination is None:
            continue
        if destination.slug in destinations:
            other = destinations[destination.slug].file
            problems.append(Problem(Location(str(path), 1, 1),
                                    f"slug '{destination.slug}' is already used by {other}"))
            continue
        destinations[destination.slug] = destination
    return destinations, sorted(set(problems))


def load(*paths: str | Path) -> dict[str, Destination]:
    """Load mapping files or directories (default: `default_mappings()`) and return the
    destinations by slug. Raises MappingError listing every problem in every file."""
    destinations, problems = check(paths or (default_mappings(),))
    if problems:
        raise MappingError(problems)
    return destinations
