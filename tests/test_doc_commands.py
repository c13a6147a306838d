"""Every command the documentation shows runs as written, checked without running it.

The commands are the lines of ```bash blocks and the inline code spans of README.md,
CHANGELOG.md and docs/**/*.md that start with ``uv run``, ``python -m``, ``torchrun`` or
``bash scripts/`` (after ``NAME=value`` variables); backslash continuations are joined, and a
``for VAR in ...; do`` loop of the block fills in ``$VAR``. Each is checked in-process:

- the module exists (``python -m code.data`` runs the package's ``__main__``);
- every ``.yaml`` argument exists, braces and globs expanded first (paths under ``output/``,
  ``data/``, ``my_images/`` and ``predictions/`` are run outputs or the user's data);
- the arguments parse with the module's own parser: ``build_parser()`` (``build_parser(argv)``
  where options depend on the arguments, e.g. a data set's own); a module without one takes
  no arguments. ``code.main`` also loads its config (or pipeline) with the ``--opts``, as a run
  does before any work; ``code.predict``'s options beyond its own are those of some task;
- ``bash scripts/NAME.sh STEP ...``: the script exists and its header comment documents each
  step, by name or as a ``configs/`` folder holding ``STEP.yaml``.

A synopsis (``--cfg FILE``, ``[--opts KEY VALUE ...]``: a placeholder word or ``...`` left
after unwrapping optional ``[--x ...]`` groups) and an inline mention without arguments are
checked only for the module and the config files.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import importlib.util
import inspect
import io
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from code.config import ConfigError, is_pipeline_file, load_config
from code.tasks.base import TASKS
from tests.small_run import REPO_ROOT

UNCHECKED_PATHS = ("output/", "data/", "my_images/", "predictions/")
PLACEHOLDERS = {"FILE", "CONFIG", "DIR", "PATH", "NAME", "N", "K", "KEY", "VALUE", "STEP"}
PROGRAMS = ("uv run", "python -m", "torchrun", "bash scripts/")
UV_OPTIONS_WITH_VALUE = {"--extra", "--group", "--with", "--python", "--env-file"}
SHELL_FENCES = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Command:
    """One documented command: where it is written, and its text with continuations joined."""

    source: str
    text: str
    inline: bool = False


def doc_files() -> list[Path]:
    files = [REPO_ROOT / "README.md", REPO_ROOT / "CHANGELOG.md"]
    return [f for f in files if f.is_file()] + sorted((REPO_ROOT / "docs").rglob("*.md"))


def extract_commands(markdown: str, source: str) -> list[Command]:
    """The commands of ``markdown``'s shell blocks and inline code spans, in order."""
    commands, prose, block, fence = [], [], [], None
    for number, line in enumerate(markdown.splitlines(), 1):
        opening = re.match(r"\s*(```+|~~~+)\s*(\w*)", line)
        if fence is None and opening:
            fence, language, block = opening.group(1), opening.group(2), []
        elif fence is not None and line.strip().startswith(fence):
            if language in SHELL_FENCES:
                commands += block_commands(block, source)
            fence = None
        elif fence is not None:
            block.append((number, line))
        else:
            prose.append((number, line))
    for number, span in inline_spans(prose):
        text = " ".join(span.split())
        if is_command(text):
            commands.append(Command(f"{source}:{number}", text, inline=True))
    return commands


def inline_spans(prose: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The code spans of the prose lines with their line numbers (a span may wrap)."""
    text = "\n".join(line for _, line in prose)
    numbers = [number for number, _ in prose]
    return [
        (numbers[text.count("\n", 0, match.start())], match.group(2).strip())
        for match in re.finditer(r"(`+)(.+?)\1", text, re.S)
    ]


def block_commands(lines: list[tuple[int, str]], source: str) -> list[Command]:
    """A shell block's commands: continuations joined, a ``for`` loop's variable filled in."""
    joined, pending, first = [], "", 0
    for number, line in lines:
        first = first if pending else number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((first, pending + line))
        pending = ""
    commands, loop = [], {}
    for number, line in joined:
        text = " ".join(line.split())
        head = re.match(r"for (\w+) in ([^;]+); do$", text)
        if head:
            loop = {head.group(1): head.group(2).split()}
        elif text == "done":
            loop = {}
        elif is_command(text):
            commands += [Command(f"{source}:{number}", t) for t in fill_loop(text, loop)]
    return commands


def fill_loop(text: str, loop: dict[str, list[str]]) -> list[str]:
    for name, values in loop.items():
        pattern = re.compile(rf"\$(\{{{name}\}}|{name}\b)")
        if pattern.search(text):
            return [pattern.sub(value, text) for value in values]
    return [text]


def is_command(text: str) -> bool:
    bare = re.sub(r"^(\w+=(\"[^\"]*\"|'[^']*'|\S*)\s+)+", "", text)
    return bare.startswith(PROGRAMS)


@dataclass(frozen=True)
class Call:
    """What a command runs: a module (``python -m``) or a script (``bash``), with arguments."""

    kind: str
    target: str
    args: list[str]
    synopsis: bool


def parse_command(command: Command) -> Call | None:
    """The call a command makes, or None for one this test does not check (``uv run pytest``)."""
    text = unwrap_optional_groups(command.text)
    words = [w for word in shlex.split(text, comments=True) for w in expand_braces(word)]
    while words and re.match(r"\w+=", words[0]):
        words.pop(0)
    if words[:2] == ["uv", "run"]:
        words = words[2:]
        while words and words[0].startswith("-"):
            words = words[2:] if words[0] in UV_OPTIONS_WITH_VALUE else words[1:]
    if words[:1] == ["bash"] and len(words) > 1:
        kind, target, args = "script", words[1], words[2:]
    elif words[:1] in (["python"], ["torchrun"]) and "-m" in words:
        at = words.index("-m")
        kind, target, args = "module", words[at + 1], words[at + 2 :]
    else:
        return None
    placeholder = any(w.split("=")[-1] in PLACEHOLDERS or "..." in w for w in words)
    return Call(kind, target, args, placeholder or (command.inline and not args))


def unwrap_optional_groups(text: str) -> str:
    """``[--x V]`` becomes ``--x V``; a group of alternatives (``|``) becomes ``...``."""
    while True:
        new = re.sub(r"\[(--[^\[\]|]*)\]", r"\1", text)
        new = re.sub(r"\[--[^\[\]]*\|[^\[\]]*\]", "...", new)
        if new == text:
            return text
        text = new


def expand_braces(word: str) -> list[str]:
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not match:
        return [word]
    parts = match.group(1).split(",")
    words = [word[: match.start()] + part + word[match.end() :] for part in parts]
    return [expanded for w in words for expanded in expand_braces(w)]


def check_command(command: Command) -> list[str]:
    """What is wrong with a documented command (empty: it runs as written)."""
    call = parse_command(command)
    if call is None:
        return []
    problems = missing_configs(call.args)
    if call.kind == "script":
        return problems + check_script(call.target, call.args)
    if not module_exists(call.target):
        return [*problems, f"no module {call.target}"]
    if call.synopsis or problems:
        return problems
    return check_arguments(call.target, call.args)


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def missing_configs(args: list[str]) -> list[str]:
    problems = []
    for arg in args:
        if not arg.endswith(".yaml") or arg.startswith(UNCHECKED_PATHS) or "$" in arg:
            continue
        if not glob.glob(arg, root_dir=REPO_ROOT):
            problems.append(f"config file not found: {arg}")
    return problems


def check_arguments(module_name: str, args: list[str]) -> list[str]:
    """Parse ``args`` as the module would, and load ``code.main``'s config."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__path__"):  # a package runs its __main__
        module = importlib.import_module(module_name + ".__main__")
    if module_name == "code.main":
        namespace, problems = parsed(lambda: module.parse_args(args))
        return problems or (load_run_config(namespace) if namespace else [])
    if module_name == "code.predict":
        return check_predict(module, args)
    if not hasattr(module, "build_parser"):
        return [f"{module_name} takes no arguments, got {args}"] if args else []
    build = module.build_parser
    parser = build(args) if inspect.signature(build).parameters else build()
    return parsed(lambda: parser.parse_args(args))[1]


def parsed(parse: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What ``parse()`` returns, or argparse's error (``--help`` parses: it exits with 0)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return parse(), []
        except SystemExit as stop:
            message = err.getvalue().strip() or f"exit status {stop.code}"
            return None, [message.splitlines()[-1]] if stop.code else []


def load_run_config(args: argparse.Namespace) -> list[str]:
    path = Path(args.cfg)
    if not str(path).endswith(".yaml") or str(path).startswith(UNCHECKED_PATHS):
        return []
    try:
        if is_pipeline_file(REPO_ROOT / path):
            from code.engine.pipeline import load_pipeline

            load_pipeline(REPO_ROOT / path, args.opts)
        else:
            load_config(REPO_ROOT / path, args.opts)
    except ConfigError as err:
        return [f"config: {err}"]
    return []


def check_predict(module: ModuleType, args: list[str]) -> list[str]:
    """``code.predict``'s own options, and the rest as one task's (the checkpoint's task)."""
    known, problems = parsed(lambda: module.build_parser().parse_known_args(args))
    if problems or known is None or not known[1]:
        return problems
    for name in TASKS.names():
        parser = module.build_parser()
        TASKS.get(name).add_predict_options(parser)
        if not parsed(lambda p=parser: p.parse_args(args))[1]:
            return []
    return [f"no task of code.predict takes {known[1]}"]


def check_script(target: str, steps: list[str]) -> list[str]:
    script = REPO_ROOT / target
    if not script.is_file():
        return [f"no script {target}"]
    known = documented_steps(script.read_text())
    unknown = [step for step in steps if step not in known]
    return [f"{target} documents no step {', '.join(unknown)}"] if unknown else []


def documented_steps(script: str) -> set[str]:
    """The words of a script's header comment, and the stems of the ``configs/`` files and
    folders it names."""
    header = []
    for line in script.splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#"))
    text = " ".join(header)
    steps = set(re.findall(r"[a-z][a-z0-9_]*", text))
    for named in re.findall(r"configs/[\w/{},.*-]+", text):
        for path in expand_braces(named.rstrip(".,")):
            pattern = path if path.endswith(".yaml") else path.rstrip("/") + "/*.yaml"
            steps |= {Path(f).stem for f in glob.glob(pattern, root_dir=REPO_ROOT)}
    return steps


def documented_commands() -> list[Command]:
    return [
        command
        for file in doc_files()
        for command in extract_commands(file.read_text(), str(file.relative_to(REPO_ROOT)))
    ]


def test_documented_commands_run_as_written() -> None:
    commands = documented_commands()
    assert len(commands) > 20, "the extractor found almost no commands"
    broken = [f"{c.source}: {c.text}\n    {p}" for c in commands for p in check_command(c)]
    assert not broken, "\n".join(broken)


def problems_of(markdown: str) -> list[str]:
    commands = extract_commands(markdown, "test.md")
    assert commands, "the command was not extracted"
    return [problem for command in commands for problem in check_command(command)]


def bash_block(*lines: str) -> str:
    return "```bash\n" + "\n".join(lines) + "\n```\n"


GOOD = "uv run python -m code.main --cfg configs/quickstart.yaml"


def test_a_correct_command_passes() -> None:
    """The negative tests below fail for the broken part alone, not for the shape."""
    assert problems_of(bash_block(GOOD)) == []
    assert problems_of(f"Run `{GOOD} --opts TRAIN.EPOCHS 1`.") == []


PREDICT = "uv run python -m code.predict --checkpoint c.pt --input i --output o"
BROKEN = {  # what a documented command breaks by -> (the command, what the problem names)
    "renamed config file": (GOOD.replace("quickstart", "quick_start"), "config file not found"),
    "renamed flag": (GOOD + " --evaluate-only", "unrecognized arguments: --evaluate-only"),
    "misspelled config key": (GOOD + " --opts TRAIN.EPOCH 1", "TRAIN.EPOCH"),
    "missing module": ("uv run python -m code.evalute compare a b --out c", "no module"),
    "unknown option": ("uv run python -m code.report runs/a --namez a --out r", "--namez"),
    "missing required option": ("uv run python -m code.evaluate compare a.json b.json", "--out"),
    "unknown task option": (PREDICT + " --scanpath-count 5", "no task"),
    "unknown script step": ("bash scripts/focus_mim_osie.sh peripheri", "no step peripheri"),
    "missing script": ("bash scripts/no_such.sh", "no script"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_command_is_named(case: str) -> None:
    command, problem = BROKEN[case]
    for markdown in (bash_block(command), f"Run `{command}`\nnow."):
        problems = problems_of(markdown)
        assert any(problem in p for p in problems), (markdown, problems)


def test_continuations_loops_and_braces_expand() -> None:
    """A wrong file hidden behind a continuation, a loop variable or a brace still counts."""
    continued = bash_block("uv run python -m code.main \\", "    --cfg configs/nope.yaml")
    loop = bash_block(
        "for m in quickstart nope; do",
        "  uv run python -m code.main --cfg configs/$m.yaml",
        "done",
    )
    braces = bash_block("uv run python -m code.main --cfg configs/{quickstart,nope}.yaml")
    for markdown in (continued, loop, braces):
        assert problems_of(markdown) == ["config file not found: configs/nope.yaml"]


def test_synopsis_and_installs_are_not_parsed() -> None:
    synopsis = "`uv run torchrun --nproc_per_node=N -m code.main --cfg FILE [--opts KEY VALUE ...]`"
    assert problems_of(synopsis) == []
    assert extract_commands(bash_block("uv sync --extra sam", "uv pip install torch"), "x") == []
