"""The package's shape, as docs/architecture.md draws it: imports go one way, never round
in a circle, and the light parts load nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

PACKAGE = ROOT / "engine"

# Each part may import the parts listed for it (and itself), nothing else.
LAYERS = {
    "core": {"core"},
    "mapping": {"core", "mapping"},
    "config": {"core", "mapping", "config"},
    "delivery": {"core", "config", "delivery"},
    "intake": {"core", "mapping", "config", "delivery", "intake"},
    "http": {"core", "mapping", "config", "delivery", "intake", "http"},
    "cli": {"core", "mapping", "config", "delivery", "intake", "http", "cli"},
}
TOP_LEVEL_PARTS = {"config": "config", "intake": "intake", "__main__": "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # engine/__init__.py: the library's face
    if parts[1] in LAYERS:
        return parts[1]
    return TOP_LEVEL_PARTS.get(parts[1], "core")


def imports_of(path: Path) -> set[str]:
    """The engine modules `path` imports (relative imports resolved), outside TYPE_CHECKING."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "engine" or target.startswith("engine."):
                # `from . import x` names a module; `from .x import y` names x.
                names = [f"{target}.{a.name}" for a in node.names]
                found |= {n for n in names if _is_module(n)} or {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("engine")}
    found.discard(module)
    return found


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").exists() or (ROOT / relative / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_imports_go_one_way() -> None:
    wrong = [f"{module} ({part_of(module)}) imports {target} ({part_of(target)})"
             for module, targets in graph().items() for target in sorted(targets)
             if part_of(target) not in LAYERS[part_of(module)]]
    assert wrong == []


def test_no_module_imports_itself_round_a_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(edges.get(module, ())):
            if target in path:
                circles.append(path[path.index(target):] + [target])
            elif len(path) < 30:
                visit(target, path + [target])

    for start in edges:
        visit(start, [start])
    assert circles == []


def test_engine_the_outbox_and_the_command_line_parser_load_nothing_heavy() -> None:
    # The mapping language and the web stack load when a command needs them, not before.
    probe = ("import sys, engine, engine.delivery, engine.cli, engine.errors, engine.normalize\n"
             "heavy = {'jinja2', 'jmespath', 'cerberus', 'yaml', 'starlette', 'uvicorn', 'aiohttp'}\n"
             "print(sorted(heavy & set(sys.modules)))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]"
