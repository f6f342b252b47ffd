"""The import direction of droplab's modules, read from their source (ast), never by importing.

The layers, bottom first (STYLE.md "The layout"): errors/checks/RNG specification -> kernels ->
functional -> layers -> tools/mc/scratch -> data/models/train -> the public facade -> studies
(the engines behind the commands) -> tour -> report -> CLI -> ``__main__``. A module may import
its own layer or a lower one; an import that points up, or a cycle between packages, fails.
There are no exceptions: an upward import is mended by moving code, never by listing it here.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "droplab"

# (prefix, layer): the longest matching prefix of a module's dotted name gives its layer
LAYERS: list[tuple[str, int]] = [
    ("droplab.errors", 0),
    ("droplab._checks", 0),
    ("droplab._rng", 0),
    ("droplab._version", 0),
    ("droplab._io", 0),
    ("droplab._console", 0),
    ("droplab._threads", 0),
    ("droplab._timer", 0),
    ("droplab._fields", 0),
    ("droplab.provenance", 0),
    ("droplab.kernels", 1),
    ("droplab.functional", 2),
    ("droplab.layers", 3),
    ("droplab.tools", 4),
    ("droplab.attention", 4),
    ("droplab.mc", 4),
    ("droplab.scratch", 4),
    ("droplab.data", 5),
    ("droplab.models", 5),
    ("droplab.train", 5),
    ("droplab", 6),  # the facade: re-exports layers 0-5
    ("droplab.studies", 7),  # the engines behind the commands: sweep, uci, MC study, bench, demo
    ("droplab.tour", 8),
    ("droplab.report", 9),
    ("droplab.cli", 10),
    ("droplab.__main__", 11),
]

RNG_CONSTANTS = {0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB}
RNG_HOME = "droplab._rng"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: pathlib.Path, importer: str, known: set[str]) -> set[str]:
    """Every droplab module ``path`` imports: at top level, in functions, or by name in a table."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(importer, path.name == "__init__.py", node)
            if target is None:
                continue
            # `from droplab import scratch` imports the submodule, not only the facade
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found.update(subs or {target})
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # lazy tables (__init__'s re-exports, __main__'s commands) name modules as strings
            if node.value in known and re.fullmatch(r"droplab(\.\w+)+", node.value):
                found.add(node.value)
    return {m for m in found if m.split(".")[0] == "droplab" and m != importer}


def import_graph() -> dict[str, set[str]]:
    mods = source_modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def layer_of(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a)}


def package_of(module: str) -> str:
    """The package a module belongs to: ``droplab.kernels.cpu`` -> ``droplab.kernels``."""
    parts = module.split(".")
    if len(parts) > 1 and (SRC / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def package_cycles(graph: dict[str, set[str]], package=package_of) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one package (Tarjan's algorithm)."""
    edges: dict[str, set[str]] = {}
    for a, deps in graph.items():
        pa = package(a)
        edges.setdefault(pa, set())
        for b in deps:
            pb = package(b)
            edges.setdefault(pb, set())
            if pa != pb and pa != "droplab" and pb != "droplab":
                edges[pa].add(pb)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: set[tuple[str, ...]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.add(tuple(sorted(comp)))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_every_module_has_a_layer(graph):
    for module in graph:
        layer_of(module)  # max() of an empty sequence raises: a module outside the table


def test_no_import_points_up_the_layers(graph):
    assert upward_imports(graph) == set(), "imports pointing up the layers"


def test_no_cycle_between_packages(graph):
    assert package_cycles(graph) == set(), "import cycles between packages"


def test_scratch_never_imports_torch():
    for name, path in source_modules().items():
        if name.startswith("droplab.scratch") or name == RNG_HOME:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    roots = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    roots = {(node.module or "").split(".")[0]}
                else:
                    continue
                assert "torch" not in roots, f"{name} imports torch (line {node.lineno})"


def test_rng_constants_live_in_one_file():
    holders = set()
    for name, path in source_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in RNG_CONSTANTS:
                holders.add(name)
    assert holders == {RNG_HOME}


def test_the_checks_catch_a_bad_graph():
    # kernels importing layers points up; layers <-> tools is a cycle between two modules
    bad = {
        "droplab.kernels.cpu": {"droplab.layers"},
        "droplab.layers": {"droplab.tools"},
        "droplab.tools": {"droplab.layers"},
    }
    assert upward_imports(bad) == {
        ("droplab.kernels.cpu", "droplab.layers"),
        ("droplab.layers", "droplab.tools"),
    }
    assert package_cycles(bad) == {("droplab.layers", "droplab.tools")}
    assert package_cycles({"droplab.layers": {"droplab.functional"}}) == set()


def test_imports_are_read_from_source(tmp_path):
    mod = tmp_path / "x.py"
    mod.write_text(
        "from droplab import scratch\n"
        "def f():\n    from droplab.kernels import rng\n"
        "TABLE = {'a': 'droplab.layers'}\n"
    )
    known = {"droplab.scratch", "droplab.kernels.rng", "droplab.layers"}
    assert imports_of(mod, "droplab.x", known) == known
