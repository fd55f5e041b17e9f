"""The package's layers stay true: no module imports a layer above its own.

Read with `ast`, so lazy imports inside functions count too. The order is the one in
`gemma_demo/__init__.py`; a layer may import itself and anything lower.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gemma_demo"
LAYERS = {"errors": 0, "media": 1, "tiny": 1, "engine": 2, "tasks": 3, "config": 4, "ui": 5, "cli": 5, "__main__": 6}


def layer_of(module: str) -> str:
    """`gemma_demo.engine.local` → `engine`; `gemma_demo.config` → `config`."""
    return module.split(".")[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("gemma_demo.")}


def upward_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    """The imports of one module file that reach a layer above it, or a sibling layer of equal rank."""
    own = layer_of(".".join(("gemma_demo", *path.relative_to(package).with_suffix("").parts)))
    if own == "__init__":
        return []
    return [
        name
        for name in sorted(imported_modules(path))
        if layer_of(name) != own and LAYERS[layer_of(name)] >= LAYERS[own]
    ]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_layer():
    unknown = {path.relative_to(PACKAGE).parts[0] for path in MODULES} - {f"{name}.py" for name in LAYERS} - set(LAYERS)
    assert unknown == {"__init__.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    assert upward_imports(path) == []


@pytest.mark.parametrize(
    ("layer", "source", "expected"),
    [
        ("engine", "def f():\n    from gemma_demo.ui.layout import build_demo\n", ["gemma_demo.ui.layout"]),
        ("tasks", "import gemma_demo.cli.main\n", ["gemma_demo.cli.main"]),
        ("ui", "from gemma_demo.cli.types import Command\n", ["gemma_demo.cli.types"]),
        ("tasks", "from gemma_demo.engine.base import Backend\n", []),
    ],
)
def test_the_check_tells_upward_from_downward(tmp_path, layer, source, expected):
    (tmp_path / layer).mkdir()
    module = tmp_path / layer / "module.py"
    module.write_text(source, encoding="utf-8")
    assert upward_imports(module, tmp_path) == expected


def module_name(path: Path, package: Path) -> str:
    """`.../gemma_demo/ui/chat.py` → `gemma_demo.ui.chat`; a package's `__init__.py` is the package."""
    parts = path.relative_to(package).with_suffix("").parts
    return ".".join((package.name, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package and the modules of it that it imports anywhere (in functions and
    under `TYPE_CHECKING` too); `from a import b` imports the module `a.b` where there is one."""
    modules = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                               else node.module for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself, with one such path (`a → b → a`), once per set of modules."""
    cycles, seen = [], set()
    for start in sorted(graph):
        path = _path_back(graph, start)
        if path and frozenset(path) not in seen:
            seen.add(frozenset(path))
            cycles.append([*path, start])
    return cycles


def _path_back(graph: dict[str, set[str]], start: str) -> list[str]:
    """The shortest import path from `start` that leads back to it, or [] (breadth first)."""
    paths, visited = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for target in sorted(graph[path[-1]]):
            if target == start:
                return path
            if target not in visited:
                visited.add(target)
                paths.append([*path, target])
    return []


def test_no_module_imports_a_module_that_imports_it_back():
    assert [" → ".join(cycle) for cycle in import_cycles(import_graph())] == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.py": "from pkg import b\n", "b.py": "if TYPE_CHECKING:\n    from pkg.a import A\n"},
         [["pkg.a", "pkg.b", "pkg.a"]]),
        ({"a.py": "import pkg.b\n", "b.py": "def f():\n    import pkg.c\n", "c.py": "from pkg.a import x\n"},
         [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]),
        ({"a.py": "from pkg.b import x\n", "b.py": "from pkg.c import y\n", "c.py": ""}, []),
    ],
)
def test_the_cycle_check_finds_circles_of_any_length(tmp_path, files, expected):
    package = tmp_path / "pkg"
    package.mkdir()
    for name, source in files.items():
        (package / name).write_text(source, encoding="utf-8")
    assert import_cycles(import_graph(package)) == expected
