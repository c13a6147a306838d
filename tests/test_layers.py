"""The package's layers import one way: a module imports only from its own layer or those below."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "code"

# Lowest first. The registry and utilities sit under everything; the configuration loader
# (``code.config``) is read only by the engine and what runs it, so parts never depend on it.
LAYERS = [
    ["code.utils"],
    ["code.registry"],
    ["code.data"],
    ["code.models"],
    ["code.metrics"],
    ["code.config", "code.config_types", "code.engine"],
    ["code.tasks"],
    # entry points, and the interop that serves checkpoints to other libraries as they do
    [
        "code.main",
        "code.experiment",
        "code.predict",
        "code.export",
        "code.evaluate",
        "code.report",
        "code.scanpath_report",
        "code.interop",
    ],
]


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def imports_of(path: Path) -> set[str]:
    """Every ``code.*`` module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("code.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("code"):
            found.add(node.module)
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for imported in imports_of(path):
            if layer_of(imported) > layer_of(module):
                upward.append(f"{module} imports {imported}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text("def f():\n    from code.metrics.baselines import CenterBias\n")
    assert imports_of(source) == {"code.metrics.baselines"}
    assert layer_of("code.metrics.baselines") > layer_of("code.data.samples")
