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
