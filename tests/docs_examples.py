"""The worked examples of ``docs/extending.md``, run as a user would have them in the repository.

An example is every fenced block of the page whose first line is ``# docs example: NAME
(PATH)``; blocks of one NAME and PATH are one file. A Python file is run as the module its PATH
names (``code/tasks/halves.py`` -> ``code.tasks.halves``), so one example file imports another
as the page writes it; a YAML file is written to PATH in a ``configs/`` folder beside links to
the repository's own configs, so its ``_BASE_`` paths resolve as they would in the repository.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.small_run import REPO_ROOT

EXTENDING = REPO_ROOT / "docs" / "extending.md"
BLOCK = re.compile(
    r"^```(?:python|yaml)\n(?P<source># docs example: (?P<name>\S+) \((?P<path>[^)]+)\)\n.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


def example_files(name: str) -> dict[str, str]:
    """PATH -> source of each file of example ``name``, in page order; an error if none."""
    files: dict[str, str] = {}
    for block in BLOCK.finditer(EXTENDING.read_text()):
        if block["name"] == name:
            files[block["path"]] = files.get(block["path"], "") + block["source"]
    if not files:
        raise KeyError(f"{EXTENDING} has no example {name!r}")
    return files


def example_names() -> set[str]:
    return {block["name"] for block in BLOCK.finditer(EXTENDING.read_text())}


@dataclass
class Example:
    """A run example: its modules by dotted name, its config files by the page's PATH."""

    modules: dict[str, types.ModuleType]
    configs: dict[str, Path]

    def config(self) -> Path:
        (path,) = self.configs.values()
        return path


@contextmanager
def examples_in(root: Path) -> Iterator[Callable[[str], Example]]:
    """A function running examples by name (configs under ``root``); on leaving, every
    registry holds again exactly what it held before, and the example modules are gone."""
    from code import registry
    from code.metrics.registry import METRICS, saliency_metrics

    registries = [r for r in vars(registry).values() if isinstance(r, registry.Registry)]
    for each in registries:
        each.names()  # the framework's own parts first, so the snapshot holds them
    saliency_metrics()
    before = {id(r): dict(r._entries) for r in registries}
    metrics_before = dict(METRICS)
    modules: list[str] = []

    def run(name: str) -> Example:
        example = Example({}, {})
        for path, source in example_files(name).items():
            if path.endswith(".py"):
                example.modules[_module_name(path)] = _imported(path, source, modules)
            else:
                example.configs[path] = _written_config(root, path, source)
        return example

    try:
        yield run
    finally:
        for each in registries:
            each._entries.clear()
            each._entries.update(before[id(each)])
        METRICS.clear()
        METRICS.update(metrics_before)
        for module in modules:
            del sys.modules[module]


def _module_name(path: str) -> str:
    return ".".join(Path(path).with_suffix("").parts)


def _imported(path: str, source: str, modules: list[str]) -> types.ModuleType:
    """``source`` run as the module ``path`` names, registered in ``sys.modules``."""
    if (REPO_ROOT / path).exists():
        raise AssertionError(f"the example file {path} would shadow the repository's")
    name = _module_name(path)
    module = types.ModuleType(name)
    module.__file__ = str(EXTENDING)
    sys.modules[name] = module
    modules.append(name)
    exec(compile(source, f"{EXTENDING}: {path}", "exec"), module.__dict__)
    return module


def _written_config(root: Path, path: str, source: str) -> Path:
    """``source`` written to ``root/path``, beside links to the repository's configs."""
    configs = root / "configs"
    if not configs.exists():
        configs.mkdir(parents=True)
        for entry in (REPO_ROOT / "configs").iterdir():
            (configs / entry.name).symlink_to(entry)
    target = root / path
    if (configs / Path(path).parts[1]).is_symlink():
        raise AssertionError(f"the example config {path} would be written into the repository")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    return target
