"""The configuration: one strict YACS tree, read from YAML files with ``_BASE_`` inheritance.

Nothing has a default. The schema below lists every key a run uses; a node that selects a
registered part (``Choice``) holds ``NAME`` plus one sub-node per part, whose keys are that
part's constructor parameters (see ``code.registry``); a part may itself choose a sub-part the
same way (a constructor parameter typed ``SubPart[REGISTRY]``), or take a fixed node of one
class's constructor keys without a ``NAME`` (``SubNode[CLASS]``). A ``Chain`` node lists parts
applied in turn in ``NAMES``, with one sub-node per listed part. Only the chosen parts' nodes are
kept in the resolved configuration, so every key of a saved ``config.yaml`` is required to load
it again.

Loading fails before any work starts, naming the full key and the file it came from, for: a key
left unset, a key nobody declared (with the closest real key), a value of the wrong type, an
unregistered part name, a missing file, and a ``_BASE_`` cycle.

A run config states what differs: ``OUTPUT_DIR: null`` (``configs/_base_/runtime.yaml``) makes
the run folder ``output/<the file's path below configs/, without .yaml>``; a value written in a
file or given with ``--opts`` wins.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from yacs.config import CfgNode

from code.registry import (
    BLOCKS,
    DATASETS,
    DECODERS,
    ENCODERS,
    INPUT_STAGES,
    MOMENTUM_SCHEDULES,
    OPTIMIZERS,
    SAMPLES,
    SCHEDULERS,
    SEGMENTERS,
    TASKS,
    TRANSFORMS,
    Chain,
    Choice,
    ConfigError,
    above,
    at_least,
    between,
    broken_check,
    each,
    length,
)

# Constrained value types, named for what they hold.
Count = Annotated[int, at_least(1)]
Amount = Annotated[int, at_least(0)]
Positive = Annotated[float, above(0)]
NonNegative = Annotated[float, at_least(0)]
Fraction = Annotated[float, between(0, 1)]
CountOrNone = Annotated[int | None, at_least(1)]
PositiveOrNone = Annotated[float | None, above(0)]

OPTS_SOURCE = "--opts"
# An OUTPUT_DIR left null is derived: RUNS_FOLDER/<the config's path below CONFIGS_FOLDER>.
CONFIGS_FOLDER = "configs"
RUNS_FOLDER = "output"
BASES_FOLDER = "_base_"  # shared parts of configs, never run themselves
PART_NODES = (dict, Choice, Chain)  # schema entries that are nodes, not values


SCHEMA: dict[str, Any] = {
    "SEED": int,
    "DETERMINISTIC": bool,  # torch.use_deterministic_algorithms: slower, bitwise repeatable
    "OUTPUT_DIR": str,  # null in a file: derived from the file's path (derived_output_dir)
    "TASK": Choice(TASKS),  # what the run does (code.tasks): train and score a density model, ...
    "DIST": {
        "TIMEOUT_S": Count,  # a rank waiting longer than this in a collective fails the run
    },
    "DATA": {
        "DATASET": Choice(DATASETS),
        "SPLIT": {
            "VAL_FRACTION": Fraction,
            "TEST_FRACTION": Fraction,
            "SEED": int,
            # k-fold cross-validation by image: test = fold FOLD
            "FOLDS": Annotated[int | None, at_least(2)],
            "FOLD": Annotated[int | None, at_least(0)],
            # a concatenation's data sets split each on its own (each keeps its own test images)
            "EACH_DATASET": bool,
        },
        "IMAGE_SIZE": Annotated[list[int], length(2), each(at_least(1))],  # [height, width]
        "SEGMENTS": Choice(SEGMENTERS),
        "SAMPLES": Choice(SAMPLES),
        "TRANSFORMS": Chain(TRANSFORMS),  # training items only, after the cache
        "CENTERBIAS": {
            "BANDWIDTH": Positive,
            "UNIFORM_WEIGHT": Fraction,
        },
        "BATCH_SIZE": Count,
        "NUM_WORKERS": Amount,  # loader processes; 0: load in the training process
        "PIN_MEMORY": bool,  # page-locked batches, for faster copies to a GPU
        "PERSISTENT_WORKERS": bool,  # keep the workers between epochs (when NUM_WORKERS > 0)
        "CACHE": {
            "DIR": str | None,
            "REBUILD": bool,
        },
    },
    "MODEL": {
        "INPUT_STAGE": Choice(INPUT_STAGES),
        "ENCODER": Choice(ENCODERS),
        "BLOCK": Choice(BLOCKS),
        "DECODER": Choice(DECODERS),
    },
    "TRAIN": {
        "EPOCHS": Count,
        "OPTIMIZER": Choice(OPTIMIZERS),
        "LR": NonNegative,
        "WEIGHT_DECAY": NonNegative,
        "SCHEDULER": Choice(SCHEDULERS),  # stepped once per epoch
        "MOMENTUM_SCHEDULE": Choice(MOMENTUM_SCHEDULES),  # set before every optimizer step
        "STOP_LR": PositiveOrNone,  # stop when every group's LR fell below this (DeepGaze)
        "PARAM_GROUPS": {  # parameters matching PATTERNS[i] (fnmatch) train at LR x LR_SCALES[i]
            "PATTERNS": list[str],
            "LR_SCALES": list[float],
        },
        "FREEZE": list[str],  # fnmatch patterns of parameter names, e.g. "encoder.*"
        "INIT": {
            "CHECKPOINT": str | None,  # start from these weights (e.g. a previous stage's best)
            "STRICT": bool,  # false: load the keys both have, keep the rest as initialised
        },
        "PRECISION": Literal["fp32", "bf16", "fp16"],
        "COMPILE": Literal["default", "reduce-overhead", "max-autotune"] | None,  # torch.compile
        "CHANNELS_LAST": bool,  # the model's weights (and so its convolutions) channels-last
        "ACCUMULATION_STEPS": Count,
        "CLIP_GRAD_NORM": PositiveOrNone,
        "BEST_METRIC": str,  # val_loss or a validation metric of the task (e.g. val_ig)
        "PATIENCE": CountOrNone,  # early stopping: epochs without a better BEST_METRIC
        "CHECKPOINT_EVERY": CountOrNone,  # also write the last checkpoint every this many steps
        "LOG_EVERY": Count,
    },
    "EVAL": {
        "PROTOCOL": Literal["raw", "benchmark"],
        "FIXATION_MAP_SIGMA": Positive,
        "CENTERBIAS_FOLDS": Annotated[int, at_least(2)],
        "JUDD_JITTER_SEED": int | None,
        "SIM_STEPS": Amount,
        "KEEP_PREDICTIONS": bool,
        "SCANPATH_IMAGES": CountOrNone,
        "NUM_OVERLAYS": Amount,
        "WORKERS": CountOrNone,  # threads scoring saliency images; None: every available core
    },
    "TRACKING": {
        "WANDB": {
            "ENABLED": bool,
            "MODE": Literal["offline", "online"],
            "PROJECT": str,
        },
        "VAL_OVERLAYS": Amount,  # validation predictions drawn each epoch
    },
}


# What ``code.evaluate`` reads: the evaluation settings, the data set's centre bias (IG is over
# it), the map-to-density fit and the scanpath metrics' parameters (``configs/_base_/``).
EVALUATE_SCHEMA: dict[str, Any] = {
    "EVAL": SCHEMA["EVAL"],
    "DATA": {"CENTERBIAS": SCHEMA["DATA"]["CENTERBIAS"]},
    "MAP_DENSITY": {"KNOTS": Count, "DOWNSAMPLE": Count, "ITERATIONS": Count},
    "SCANPATH": {
        "GRID": Annotated[list[int], length(2), each(at_least(1))],  # [x bins, y bins]
        "SCANMATCH_THRESHOLD": Positive,  # grid cells
        "SCANMATCH_GAP": float,
        "TEMPORAL_BIN_MS": NonNegative,  # 0: no temporal binning
    },
}


def load_config(path: str | Path, opts: list[str]) -> CfgNode:
    """Read ``path`` (following ``_BASE_``), apply ``opts`` (KEY VALUE ...), derive an
    ``OUTPUT_DIR`` left null (:func:`derived_output_dir`), validate, freeze."""
    tree, sources = _read_tree(path, opts, SCHEMA)
    problems = []  # reported with the other problems of the file, not alone before them
    if "OUTPUT_DIR" in tree and tree["OUTPUT_DIR"] is None:
        try:
            tree["OUTPUT_DIR"] = derived_output_dir(Path(path))
        except ConfigError as err:
            problems.append(str(err))
    return _checked(tree, sources, SCHEMA, path, problems)


# Keys the schema gained after configurations were saved with runs and checkpoints, each with
# the value that keeps an older run's meaning. A saved configuration without one is read with
# that value (so older checkpoints, the shipped model's among them, keep loading and finished
# pipeline stages keep matching); a config file must still set it.
ADDED_KEYS: dict[str, Any] = {
    "DATA.SPLIT.EACH_DATASET": False,  # before it, a concatenation was split as one data set
}


def with_added_keys(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved configuration's tree with every :data:`ADDED_KEYS` key it predates, where the
    node that holds it exists."""
    for key, value in ADDED_KEYS.items():
        *path, leaf = key.split(".")
        node = saved
        for name in path:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(leaf, value)
    return saved


def load_config_text(text: str, opts: list[str]) -> CfgNode:
    """A resolved configuration saved as YAML text (a checkpoint's, a run's), with ``opts``
    applied, validated like any config file (keys added to the schema since it was saved take
    their :data:`ADDED_KEYS` values)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        tree = with_added_keys(yaml.safe_load(text))
        path.write_text(yaml.safe_dump(tree, sort_keys=False))
        return load_config(path, opts)


def derived_output_dir(path: Path) -> str:
    """The run folder of the config file ``path`` when its ``OUTPUT_DIR`` is null: ``output/``
    and the file's path below the nearest enclosing ``configs/`` folder, without ``.yaml``
    (``configs/03_mr_cnn/blur.yaml`` runs in ``output/03_mr_cnn/blur``). Two files of one
    ``configs/`` tree never share a derived folder, as they never share a path."""
    absolute = Path(os.path.abspath(path))  # symbolic links kept: the path the user named
    root = next((folder for folder in absolute.parents if folder.name == CONFIGS_FOLDER), None)
    below = absolute.relative_to(root).with_suffix("") if root is not None else None
    if below is None or absolute.suffix != ".yaml" or BASES_FOLDER in below.parts:
        raise ConfigError(
            f"OUTPUT_DIR: null derives the run folder from the path of a .yaml run config below "
            f"a {CONFIGS_FOLDER}/ folder (not a {BASES_FOLDER}/ file), and {path} is not one; "
            "set OUTPUT_DIR in the file or with --opts OUTPUT_DIR DIR"
        )
    return f"{RUNS_FOLDER}/{below.as_posix()}"


def load_tree(path: str | Path, opts: list[str], schema: dict[str, Any]) -> CfgNode:
    """``load_config`` against another schema (e.g. a pipeline's): same files, rules, errors."""
    return _checked(*_read_tree(path, opts, schema), schema, path, [])


def _read_tree(
    path: str | Path, opts: list[str], schema: dict[str, Any]
) -> tuple[dict, dict[str, str]]:
    """The merged tree of ``path``, its bases and ``opts``, and the file that set each key."""
    tree, sources = _read_yaml_tree(Path(path), chain=())
    _apply_opts(tree, sources, opts, schema)
    return tree, sources


def _checked(
    tree: dict,
    sources: dict[str, str],
    schema: dict[str, Any],
    path: str | Path,
    problems: list[str],
) -> CfgNode:
    """The validated tree as a frozen CfgNode, or one ConfigError listing every problem (those
    found before validation first)."""
    errors = [*problems, *_validate(tree, schema, prefix="", sources=sources, root_file=str(path))]
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    cfg = CfgNode(_in_schema_order(tree, schema))
    cfg.freeze()
    return cfg


def load_nodes(paths: list[Path], opts: list[str], schema: dict[str, Any]) -> CfgNode:
    """The nodes ``schema`` declares, read from ``paths`` in turn (each following ``_BASE_``;
    later files win), then ``opts``; validated as ``load_config`` (a key unset, unknown or of
    the wrong type is refused, naming it and its file). The files' other nodes are not read,
    so a run's whole configuration may serve (``code.evaluate --cfg``)."""
    tree: dict = {}
    sources: dict[str, str] = {}
    for path in paths:
        file_tree, file_sources = _read_yaml_tree(Path(path), chain=())
        _merge(tree, _declared_nodes(file_tree, schema))
        sources.update(file_sources)
    _apply_opts(tree, sources, opts, schema)
    return _checked(tree, sources, schema, paths[-1], [])


def _declared_nodes(tree: dict, schema: dict[str, Any]) -> dict:
    """``tree`` without the nodes ``schema`` does not declare, at the levels that only group
    nodes (the top, ``DATA``); a declared node of values is kept whole, so typos in it are
    refused."""
    if not all(isinstance(v, dict) for v in schema.values()):
        return tree
    return {
        key: _declared_nodes(value, schema[key]) if isinstance(value, dict) else value
        for key, value in tree.items()
        if key in schema
    }


def _in_schema_order(tree: dict, schema: Any) -> dict:
    """The validated tree with keys in the schema's order, so saved configs read top-down."""
    if isinstance(schema, Choice):
        name = tree["NAME"]
        return {
            "NAME": name,
            name.upper(): _in_schema_order(tree[name.upper()], schema.registry.schema(name)),
        }
    if isinstance(schema, Chain):
        return {
            "NAMES": tree["NAMES"],
            **{
                name.upper(): _in_schema_order(tree[name.upper()], schema.registry.schema(name))
                for name in tree["NAMES"]
            },
        }
    return {
        key: _in_schema_order(tree[key], sub) if isinstance(sub, PART_NODES) else tree[key]
        for key, sub in schema.items()
    }


def is_pipeline_file(path: Path) -> bool:
    """Whether ``path`` is a pipeline file (a top-level ``PIPELINE`` node, ``code.engine.pipeline``)
    and not a run config."""
    if not path.is_file():
        return False
    data = yaml.safe_load(path.read_text())
    return isinstance(data, dict) and "PIPELINE" in data


def save_config(cfg: CfgNode, path: Path) -> None:
    path.write_text(cfg.dump(sort_keys=False))


def flat_keys(node: dict, prefix: str = "") -> dict:
    """A configuration as {"DATA.IMAGE_SIZE": value, ...}, to compare two key by key."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flat_keys(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


# --- the typed view for editors ----------------------------------------------------------------

# Generated on demand, not tracked: a stub editors and type checkers read beside this module.
TYPED_VIEW = Path(__file__).with_name("config_types.pyi")


def render_typed_view() -> str:
    """Source of ``code/config_types.pyi``: one Protocol per node, for autocompletion.

    Annotate a configuration as ``cfg: "Config"`` (imported under TYPE_CHECKING) and editors
    complete ``cfg.MODEL.ENCODER.DINOV2.LAYERS``. Regenerate with ``python -m code.config``.
    """
    classes: list[str] = []
    _render_node("Config", SCHEMA, classes, {})
    header = [
        '"""Typed view of the configuration schema; generated by `python -m code.config`."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Literal, Protocol",
        "",
    ]
    return "\n".join(header) + "\n\n" + "\n\n\n".join(reversed(classes)) + "\n"


def _render_node(
    class_name: str, schema: Any, classes: list[str], above: dict[tuple[str, str], str]
) -> None:
    """``above``: the class of each part on the path here, so a part that may contain itself
    (a data set concatenating data sets) refers to its class instead of recursing forever."""
    lines = [f"class {class_name}(Protocol):"]
    if isinstance(schema, Choice | Chain):
        lines.append("    NAME: str" if isinstance(schema, Choice) else "    NAMES: list[str]")
        for name in schema.registry.names():
            part = (schema.registry.kind, name)
            if part in above:
                lines.append(f"    {name.upper()}: {above[part]}")
                continue
            child = class_name.removesuffix("Config") + _camel(name) + "Config"
            lines.append(f"    {name.upper()}: {child}")
            _render_node(child, schema.registry.schema(name), classes, {**above, part: child})
    for key, value in schema.items() if isinstance(schema, dict) else ():
        if isinstance(value, PART_NODES):
            child = class_name.removesuffix("Config") + _camel(key) + "Config"
            lines.append(f"    {key}: {child}")
            _render_node(child, value, classes, above)
        else:
            lines.append(f"    {key}: {_annotation(value)}")
    if len(lines) == 1:
        lines.append("    pass")
    classes.append("\n".join(lines))


def _camel(key: str) -> str:
    return key.title().replace("_", "")


def _annotation(expected: Any) -> str:
    if typing.get_origin(expected) is Annotated:
        return _annotation(typing.get_args(expected)[0])
    if typing.get_origin(expected) is Literal:
        return "Literal[" + ", ".join(json.dumps(v) for v in typing.get_args(expected)) + "]"
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " | ".join(_annotation(a) for a in typing.get_args(expected))
    if expected is type(None):
        return "None"
    if typing.get_origin(expected) in (list, tuple):
        return f"list[{_annotation(typing.get_args(expected)[0])}]"
    return expected.__name__


if __name__ == "__main__":
    TYPED_VIEW.write_text(render_typed_view())
    print(f"wrote {TYPED_VIEW}")


# --- reading -----------------------------------------------------------------------------------


def _read_yaml_tree(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    """Load ``path`` and its bases, merged (later wins); also return key -> file that set it."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"_BASE_ cycle: {cycle}")
    if not path.is_file():
        where = f" (a _BASE_ of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    bases = data.pop("_BASE_", [])
    bases = [bases] if isinstance(bases, str) else bases
    tree: dict = {}
    sources: dict[str, str] = {}
    for base in bases:
        base_tree, base_sources = _read_yaml_tree(path.parent / base, (*chain, resolved))
        _merge(tree, base_tree)
        sources.update(base_sources)
    _merge(tree, data)
    sources.update({key: str(path) for key in _leaf_keys(data, "")})
    return tree, sources


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _drop_switched_parts(into[key], value)
            _merge(into[key], value)
        else:
            into[key] = value


def _drop_switched_parts(node: dict, new: dict) -> None:
    """A later file (or --opts) choosing other parts replaces the parts chosen before: the
    nodes of parts no longer chosen go with the choice (any left would be refused as unused)."""
    for selector in ("NAME", "NAMES"):
        if selector in node and selector in new:
            before, after = node[selector], new[selector]
            before = before if isinstance(before, list) else [before]
            after = after if isinstance(after, list) else [after]
            for name in before:
                if isinstance(name, str) and name not in after:
                    node.pop(name.upper(), None)


def _leaf_keys(tree: dict, prefix: str) -> Iterator[str]:
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaf_keys(value, full + ".")
        else:
            yield full


def _apply_opts(tree: dict, sources: dict[str, str], opts: list[str], schema: dict) -> None:
    if len(opts) % 2:
        raise ConfigError(f"--opts takes KEY VALUE pairs, got an odd count: {opts}")
    for key, raw in zip(opts[::2], opts[1::2], strict=True):
        node_schema: Any = schema
        node = tree
        parts = key.split(".")
        for depth, part in enumerate(parts):
            node_schema = _child_schema(node_schema, part, node)
            if node_schema is None:
                known = _schema_keys(_parent_schema(schema, parts[:depth]), node)
                raise ConfigError(f"{OPTS_SOURCE}: unknown key {key}{_suggest(part, known)}")
            if depth < len(parts) - 1:
                node = node.setdefault(part, {})
        value = yaml.safe_load(raw)
        _drop_switched_parts(node, {parts[-1]: value})
        node[parts[-1]] = value
        sources[key] = OPTS_SOURCE


def _parent_schema(schema: dict, parts: list[str]) -> Any:
    node: Any = schema
    for part in parts:
        node = _child_schema(node, part, {})
    return node


def _child_schema(node_schema: Any, key: str, node: dict) -> Any:
    """The schema of ``key`` inside a node, or None when the key is not declared there."""
    if isinstance(node_schema, Choice | Chain):
        if key == _selector(node_schema):
            return str if isinstance(node_schema, Choice) else list[str]
        name = key.lower()
        return node_schema.registry.schema(name) if name in node_schema.registry else None
    if isinstance(node_schema, dict):
        return node_schema.get(key)
    return None


def _schema_keys(node_schema: Any, node: dict) -> list[str]:
    if isinstance(node_schema, Choice | Chain):
        return [_selector(node_schema), *(n.upper() for n in node_schema.registry.names())]
    return list(node_schema) if isinstance(node_schema, dict) else []


def _selector(node_schema: Choice | Chain) -> str:
    """The key naming the chosen part(s) of a part node."""
    return "NAME" if isinstance(node_schema, Choice) else "NAMES"


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(known)})"


# --- validation --------------------------------------------------------------------------------


def _validate(
    tree: dict, schema: dict, prefix: str, sources: dict[str, str], root_file: str
) -> Iterator[str]:
    """Yield one message per problem (a node of a part that is not chosen is one)."""
    for key in tree:
        if key not in schema:
            full = prefix + key
            yield f"{full}: unknown key in {_source(sources, full)}{_suggest(key, list(schema))}"
    for key, expected in schema.items():
        full = prefix + key
        if key not in tree:
            where = f"{root_file} and its _BASE_ files"
            yield f"{full}: missing; set it in {where} (expected {_type_name(expected)})"
            continue
        value = tree[key]
        if isinstance(expected, Choice | Chain):
            if not isinstance(value, dict):
                where = _source(sources, full)
                selector = _selector(expected)
                yield f"{full}: expected a node with {selector}, got {value!r} in {where}"
                continue
            yield from _validate_parts(value, expected, full, sources, root_file)
        elif isinstance(expected, dict):
            if not isinstance(value, dict):
                yield f"{full}: expected a node, got {value!r} in {_source(sources, full)}"
                continue
            yield from _validate(value, expected, full + ".", sources, root_file)
        else:
            ok, converted = _check_type(value, expected)
            broken = broken_check(converted, expected) if ok else None
            if not ok:
                yield (
                    f"{full}: expected {_type_name(expected)}, got {value!r} "
                    f"({type(value).__name__}) in {_source(sources, full)}"
                )
            elif broken is not None:
                yield f"{full}: must be {broken.says}, got {value!r} in {_source(sources, full)}"
            else:
                tree[key] = converted


def _validate_parts(
    node: dict, schema: Choice | Chain, full: str, sources: dict[str, str], root_file: str
) -> Iterator[str]:
    """A node choosing one part (``NAME``) or listing parts in turn (``NAMES``)."""
    registry, selector = schema.registry, _selector(schema)
    where = _source(sources, f"{full}.{selector}")
    if isinstance(schema, Choice):
        names = [node.get("NAME")]
    else:
        names = node.get("NAMES")
        if names is None:
            yield f"{full}.NAMES: missing; list the {registry.kind}s to apply, [] for none"
            return
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            kind = registry.kind
            yield f"{full}.NAMES: expected a list of {kind} names, got {names!r} in {where}"
            return
        if len(set(names)) != len(names):
            yield f"{full}.NAMES: {names} names a {registry.kind} twice in {where}"
            return
    registered = ", ".join(registry.names())
    for name in names:
        if name not in registry:
            got = "missing" if name is None else f"{name!r} is not registered"
            yield f"{full}.{selector}: {got} in {where}; registered {registry.kind}s: {registered}"
    if any(name not in registry for name in names):
        return
    chosen = {name.upper() for name in names}
    for key in list(node):
        if key == selector or key in chosen:
            continue
        if key.lower() in registry:
            chose = (
                f"{selector}: {names[0]}" if isinstance(schema, Choice) else f"{selector}: {names}"
            )
            yield (
                f"{full}.{key}: sets {registry.kind} {key.lower()!r}, which is not chosen "
                f"({full}.{chose}) in {_source(sources, full + '.' + key)}; remove it or choose it"
            )
        else:
            yield f"{full}.{key}: unknown key in {_source(sources, full + '.' + key)}" + _suggest(
                key, _schema_keys(schema, node)
            )
    for name in names:
        sub_schema, key = registry.schema(name), name.upper()
        if key not in node:
            if sub_schema:
                takes = ", ".join(sub_schema)
                yield f"{full}.{key}: missing; {registry.kind} {name!r} takes {takes}"
            node[key] = {}
            continue
        yield from _validate(node[key], sub_schema, f"{full}.{key}.", sources, root_file)


_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _check_type(value: Any, expected: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the type hint ``expected``; also the value in its canonical form."""
    origin = typing.get_origin(expected)
    if origin is Annotated:  # the type, with checks applied after (``broken_check``)
        return _check_type(value, typing.get_args(expected)[0])
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            ok, converted = _check_type(value, option)
            if ok:
                return True, converted
        return False, value
    if expected is type(None):
        return value is None, value
    if origin is Literal:
        return value in typing.get_args(expected), value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value
        (item_type, *_) = typing.get_args(expected)
        checked = [_check_type(item, item_type) for item in value]
        return all(ok for ok, _ in checked), [item for _, item in checked]
    if expected is bool:
        return isinstance(value, bool), value
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        # YAML 1.1 reads "1e-4" (no dot) as text; a float key accepts it as the number it is.
        if isinstance(value, str) and _FLOAT_TEXT.match(value):
            return True, float(value)
        return False, value
    if expected is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported type in the config schema: {expected!r}")


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) is Annotated:
        return _type_name(typing.get_args(expected)[0])
    if isinstance(expected, Choice):
        return f"a node choosing a {expected.registry.kind}"
    if isinstance(expected, Chain):
        return f"a node listing {expected.registry.kind}s in NAMES"
    if isinstance(expected, dict):
        return "a node"
    if typing.get_origin(expected) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(expected))
    return (
        getattr(expected, "__name__", None)
        if typing.get_origin(expected) is None
        else str(expected).replace("typing.", "")
    )


def _source(sources: dict[str, str], full: str) -> str:
    if full in sources:
        return sources[full]
    # A node's source is the file that set any key below it.
    below = [src for key, src in sources.items() if key.startswith(full + ".")]
    return below[0] if below else "the config"
