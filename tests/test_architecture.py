"""The layer drawing of docs/architecture.md, checked on the code: every import of the package
(module level and inside functions) points to its own layer or a lower one, no two parts
(a subpackage, or a top-level module) import each other, directly or round a loop, and only the
CLI draws on a terminal (rich, typer)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "robustbench_ode"

# Lowest first, as docs/architecture.md draws them. A part is a subpackage or a top-level module
# (`cli` is the command line's subpackage); the package's own __init__ is the Python API's front door.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"errors", "version", "parsing", "registry", "progress", "distributed", "ode_backends"}),
    ("data", {"data"}),
    ("models", {"models"}),
    ("services", {"precision", "runinfo", "checkpoint", "convert", "weight_files", "pixel_model", "user_model",
                  "model_checks", "report"}),
    ("attacks", {"attacks"}),
    ("work", {"evaluation", "training"}),
    ("diagnostics", {"diagnostics"}),
    ("programs", {"experiments", "claims"}),
    ("api", {"api", "__init__"}),
    ("cli", {"cli", "__main__"}),
]
# Imports allowed to point upward, each with its reason: (importing module, imported module).
UPWARD_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _part(module: str) -> str:
    """The subpackage or top-level module `module` belongs to ('__init__': the package itself)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


LAYER_OF = {part: i for i, (_, parts) in enumerate(LAYERS) for part in parts}


def _all_imports(module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement in `module`, of the package or not."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import distributed` imports a module, not the package
                found.append((f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base, node.lineno))
    return found


def _imports(module: str) -> list[tuple[str, int]]:
    """(imported module of the package, line) for every import statement in `module`."""
    return [(name, line) for name, line in _all_imports(module) if name.split(".")[0] == PACKAGE.name]


EDGES = [(module, imported, line) for module in MODULES for imported, line in _imports(module)]


def test_every_part_of_the_package_has_a_layer():
    assert sorted({_part(m) for m in MODULES} - set(LAYER_OF)) == []
    assert sorted(set(LAYER_OF) - {_part(m) for m in MODULES}) == []  # the drawing names nothing that is gone


def test_no_import_points_to_a_higher_layer():
    upward = [f"{module}:{line} imports {imported} ({LAYERS[LAYER_OF[_part(module)]][0]} -> "
              f"{LAYERS[LAYER_OF[_part(imported)]][0]})"
              for module, imported, line in EDGES
              if LAYER_OF[_part(imported)] > LAYER_OF[_part(module)] and (module, imported) not in UPWARD_EXCEPTIONS]
    assert upward == []


def test_no_two_parts_import_each_other_round_a_loop():
    graph: dict[str, set[str]] = {}
    for module, imported, _ in EDGES:
        if _part(module) != _part(imported):
            graph.setdefault(_part(module), set()).add(_part(imported))
    cycles, done = [], set()

    def visit(part: str, path: list[str]) -> None:
        if part in path:
            cycles.append(path[path.index(part):] + [part])
            return
        if part in done:
            return
        for nxt in sorted(graph.get(part, ())):
            visit(nxt, path + [part])
        done.add(part)

    for part in sorted(graph):
        visit(part, [])
    assert cycles == []


def test_the_api_names_and_the_subpackages_do_not_clash():
    """`robustbench_ode.audit` and `.evaluate` are the API's functions: no subpackage or module may take those names."""
    assert {"audit", "evaluate"} & {_part(m) for m in MODULES} == set()


def test_only_the_cli_imports_rich_or_typer():
    """Library code reports through `progress.Reporter`; drawing on a terminal is the CLI's job."""
    terminal = [f"{module}:{line} imports {name}" for module in MODULES for name, line in _all_imports(module)
                if name.split(".")[0] in {"rich", "typer"} and _part(module) != "cli"]
    assert terminal == []
