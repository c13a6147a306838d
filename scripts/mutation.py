"""Mutation testing of the modules behind the published numbers: how many plausible one-token
bugs does the fast suite notice?

    uv run python -m scripts.mutation [--modules code/metrics/uncertainty.py ...] [--commit REV]
                                      [--sample 60] [--seed 0] [--out mutation.json]
    uv run python -m scripts.mutation --commit REV --replay mutation.json

Every mutant changes one node of a module's functions, the way a typing slip would: a comparison
flipped or loosened (``<`` → ``<=``, ``==`` → ``!=``), an arithmetic operator swapped (``+`` ↔
``-``, ``*`` ↔ ``/``), a sign dropped, a ``not`` removed, ``and`` ↔ ``or``, ``True`` ↔ ``False``,
a number changed (``n`` → ``n + 1``, ``x`` → ``2x``). ``--sample`` mutants are drawn (seeded)
from all of them; each is written into a temporary git worktree of ``--commit`` (default
HEAD), and the tests of its module run there (``-m "not slow" -x``): the test files that import
the module by name (``TESTS`` adds those that reach it through a command or another module).
A mutant whose tests all pass *survived*. The survivors are listed with their place and change,
the rate printed per module.
``--replay`` runs an earlier report's survivors again on ``--commit`` (e.g. after new tests),
each found by its change on a line of the same text.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODULES = [
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "code" / "metrics").glob("[!_]*.py")),
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "code" / "engine").glob("[!_]*.py")
            if p.stem not in ("visualize", "tracking")),  # pictures and logs, not numbers
    "code/data/cache.py",
]  # fmt: skip
# Test files that exercise a module without naming it (through a command or another module).
TESTS = {
    "code/metrics/dataset_scoring.py": [
        "tests/test_evaluate_cli.py",
        "tests/test_metrics_pysaliency.py",
    ],
    "code/metrics/evaluator.py": ["tests/test_evaluate_cli.py"],
    "code/metrics/uncertainty.py": ["tests/test_evaluate_cli.py"],
    "code/metrics/protocol.py": ["tests/test_evaluate_cli.py"],
    "code/engine/trainer.py": [
        "tests/test_engine_training.py",
        "tests/test_engine_resume.py",
        "tests/test_engine_best.py",
    ],
    "code/data/cache.py": ["tests/test_data_cache_key.py"],
    "code/engine/model_scoring.py": ["tests/test_engine_training.py", "tests/test_tasks.py"],
    "code/engine/optim.py": ["tests/test_engine_training.py", "tests/test_engine_resume.py"],
}
SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv,
    ast.And: ast.Or, ast.Or: ast.And,
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    module: str
    line: int
    change: str  # e.g. "Lt -> LtE", "0.5 -> 1.0"
    index: int  # the mutation's place among the module's mutation points, in walk order


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the constant nodes that are docstrings (not mutated)."""
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                ids.add(id(value))
    return ids


def _points(tree: ast.Module) -> list[tuple[ast.AST, str, object]]:
    """Every mutation point inside a function body: (node, attribute, replacement)."""
    skip = _docstrings(tree)
    points: list[tuple[ast.AST, str, object]] = []
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for function in functions:
        for statement in function.body:
            for node in ast.walk(statement):
                if isinstance(node, ast.Compare):
                    for k, op in enumerate(node.ops):
                        if type(op) in SWAPS:
                            ops = list(node.ops)
                            ops[k] = SWAPS[type(op)]()
                            points.append((node, "ops", ops))
                elif isinstance(node, ast.BinOp | ast.BoolOp | ast.AugAssign):
                    if type(node.op) in SWAPS:
                        points.append((node, "op", SWAPS[type(node.op)]()))
                elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
                    points.append(
                        (node, "op", ast.UAdd() if isinstance(node.op, ast.USub) else None)
                    )
                elif isinstance(node, ast.Constant) and id(node) not in skip:
                    value = node.value
                    if isinstance(value, bool):
                        points.append((node, "value", not value))
                    elif isinstance(value, int):
                        points.append((node, "value", value + 1))
                    elif isinstance(value, float):
                        points.append((node, "value", 2 * value if value else 1.0))
    return points


def _describe(node: ast.AST, attribute: str, replacement: object) -> str:
    if attribute == "ops":
        before = "/".join(type(op).__name__ for op in node.ops)
        return f"{before} -> {'/'.join(type(op).__name__ for op in replacement)}"
    if attribute == "op":
        after = "(removed)" if replacement is None else type(replacement).__name__
        return f"{type(node.op).__name__} -> {after}"
    return f"{node.value!r} -> {replacement!r}"


def mutants_of(root: Path, module: str) -> list[Mutant]:
    tree = ast.parse((root / module).read_text())
    return [Mutant(module, node.lineno, _describe(node, attribute, replacement), index)
            for index, (node, attribute, replacement) in enumerate(_points(tree))]  # fmt: skip


def mutated_source(mutant: Mutant, source: str) -> str:
    """The module's source with the mutant's one change (re-printed by ``ast.unparse``)."""
    tree = ast.parse(source)
    node, attribute, replacement = _points(tree)[mutant.index]
    if attribute == "op" and replacement is None:  # `not x` -> `x`
        tree = _Replace(node, node.operand).visit(tree)
    else:
        setattr(node, attribute, replacement)
    return ast.unparse(ast.fix_missing_locations(tree))


class _Replace(ast.NodeTransformer):
    """Puts ``by`` where ``target`` (that very node) was."""

    def __init__(self, target: ast.AST, by: ast.AST) -> None:
        self.target, self.by = target, by

    def visit(self, node: ast.AST) -> ast.AST:
        return self.by if node is self.target else super().visit(node)


@functools.cache  # the test files are read once per module, not once per mutant
def tests_of(root: Path, module: str) -> list[str]:
    """The test files that import ``module`` by its dotted name, and ``TESTS[module]``."""
    dotted = module.removesuffix(".py").replace("/", ".")
    package, name = dotted.rsplit(".", 1)
    pattern = re.compile(rf"({re.escape(dotted)}\b|from {re.escape(package)} import .*\b{name}\b)")
    named = [str(p.relative_to(root)) for p in sorted((root / "tests").glob("test_*.py"))
             if pattern.search(p.read_text())]  # fmt: skip
    extra = [test for test in TESTS.get(module, []) if (root / test).is_file()]
    return sorted(set(named) | set(extra))


def run_tests(worktree: Path, tests: list[str], timeout_s: int) -> str:
    """'killed' (a test failed, errored or timed out) or 'survived'."""
    env = {**os.environ, "PYTHONPATH": str(worktree), "CI": "true"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow",
               "-p", "no:cacheprovider", *tests]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=worktree, env=env, capture_output=True,
                              timeout=timeout_s)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "killed"
    return "survived" if done.returncode == 0 else "killed"


def drawn(worktree: Path, modules: list[str], sample: int, seed: int) -> list[Mutant]:
    """``sample`` mutants drawn (seeded) from every mutant of the ``modules`` that have tests."""
    candidates = [m for module in modules if tests_of(worktree, module)
                  for m in mutants_of(worktree, module)]  # fmt: skip
    untested = [module for module in modules if not tests_of(worktree, module)]
    print(f"{len(candidates)} mutants in {len(modules)} modules"
          + (f"; no test file names {', '.join(untested)}" if untested else ""))  # fmt: skip
    return random.Random(seed).sample(candidates, min(sample, len(candidates)))


def replayed(worktree: Path, report: dict) -> list[Mutant]:
    """The survivors of an earlier ``report``, found again in ``worktree``'s code: the mutant of
    the same change on a line of the same text (the code may have moved); those whose line is
    gone are reported and left out."""
    found = []
    for old in (o for o in report["outcomes"] if o["outcome"] == "survived"):
        source = subprocess.run(["git", "show", f"{report['commit']}:{old['module']}"], cwd=REPO,
                                check=True, capture_output=True, text=True).stdout  # fmt: skip
        text = source.splitlines()[old["line"] - 1].strip()
        lines = (worktree / old["module"]).read_text().splitlines()
        same = [m for m in mutants_of(worktree, old["module"])
                if m.change == old["change"] and lines[m.line - 1].strip() == text]  # fmt: skip
        if same:
            found.append(same[0])
        else:
            print(f"gone: {old['module']}:{old['line']} {old['change']} ({text})")
    return found


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from ``main`` so that documented commands can be checked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", default=DEFAULT_MODULES)
    parser.add_argument("--sample", type=int, default=60, help="mutants drawn over all modules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commit", default="HEAD", help="the code and tests to mutate")
    parser.add_argument(
        "--replay",
        type=Path,
        help="an earlier --out: run its survivors again (on --commit's tests)",
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant's tests")
    parser.add_argument("--out", type=Path, help="JSON with every mutant's outcome")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", args.commit], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "mutation"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), commit],
                       cwd=REPO, check=True, capture_output=True)  # fmt: skip
        (worktree.parent / "shared").symlink_to(REPO.parent / "shared")  # ../shared/data
        try:
            if args.replay:
                chosen = replayed(worktree, json.loads(args.replay.read_text()))
            else:
                chosen = drawn(worktree, args.modules, args.sample, args.seed)
            for k, mutant in enumerate(sorted(chosen, key=lambda m: (m.module, m.index))):
                path = worktree / mutant.module
                original = path.read_text()
                path.write_text(mutated_source(mutant, original))
                try:
                    outcome = run_tests(worktree, tests_of(worktree, mutant.module), args.timeout)
                finally:
                    path.write_text(original)
                outcomes.append({**asdict(mutant), "outcome": outcome})
                print(f"[{k + 1}/{len(chosen)}] {outcome:>8}  {mutant.module}:{mutant.line}  "
                      f"{mutant.change}", flush=True)  # fmt: skip
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO)
    summarise(outcomes)
    report = {"commit": commit, "seed": args.seed, "outcomes": outcomes}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return report


def summarise(outcomes: list[dict]) -> None:
    survivors = [o for o in outcomes if o["outcome"] == "survived"]
    print(f"\nsurvived: {len(survivors)} of {len(outcomes)} "
          f"({100 * len(survivors) / max(len(outcomes), 1):.0f} %)")  # fmt: skip
    for module in sorted({o["module"] for o in outcomes}):
        mine = [o for o in outcomes if o["module"] == module]
        alive = sum(o["outcome"] == "survived" for o in mine)
        print(f"  {module}: {alive} of {len(mine)} survived")


if __name__ == "__main__":
    main()
