"""The strict configuration: every way a config can be wrong fails early, naming key and file."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
import yaml
from yacs.config import CfgNode

from code.config import (
    ADDED_KEYS,
    SCHEMA,
    TYPED_VIEW,
    ConfigError,
    flat_keys,
    is_pipeline_file,
    load_config,
    load_config_text,
    render_typed_view,
    save_config,
)
from code.engine.pipeline import changed_keys, load_pipeline
from code.registry import (
    Chain,
    Choice,
    Registry,
    SubPart,
    at_least,
    broken_check,
    constructor_schema,
)

QUICKSTART = Path("configs/quickstart.yaml")


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict):  # an empty node (a part without keys) holds no leaf
            keys += _leaves(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def _without(tree: dict, dotted: str) -> dict:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    del node[leaf]
    return tree


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    save_config(load_config(QUICKSTART, []), path)
    return yaml.safe_load(path.read_text())


def test_saved_config_loads_back(saved: dict, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved))
    assert load_config(path, []).MODEL.ENCODER.NAME == "convnet"


def test_deleting_any_leaf_of_a_saved_config_fails_naming_it(saved: dict, tmp_path: Path) -> None:
    leaves = _leaves(saved)
    assert len(leaves) > 20
    for key in leaves:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(_without(yaml.safe_load(yaml.safe_dump(saved)), key)))
        with pytest.raises(ConfigError, match=re.escape(f"{key}: missing")):
            load_config(path, [])


def test_unknown_key_via_opts_is_named_with_a_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"--opts: unknown key TRAIN\.EPOCH \(did you mean EPOCHS\?\)"
    ):
        load_config(QUICKSTART, ["TRAIN.EPOCH", "3"])


def test_unknown_key_in_a_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(f"_BASE_: [{QUICKSTART.resolve()}]\nTRAIN:\n  EPOHCS: 3\n")
    with pytest.raises(
        ConfigError, match=rf"TRAIN\.EPOHCS: unknown key in {path}.*did you mean EPOCHS"
    ):
        load_config(path, [])


def test_wrong_type_is_named() -> None:
    with pytest.raises(
        ConfigError, match=r"TRAIN\.EPOCHS: expected int, got 'many' \(str\) in --opts"
    ):
        load_config(QUICKSTART, ["TRAIN.EPOCHS", "many"])
    with pytest.raises(ConfigError, match=r"DATA\.IMAGE_SIZE: expected list\[int\]"):
        load_config(QUICKSTART, ["DATA.IMAGE_SIZE", "[72.5, 96]"])


def test_float_keys_accept_exponent_notation_and_ints() -> None:
    cfg = load_config(QUICKSTART, ["TRAIN.LR", "1e-4", "TRAIN.WEIGHT_DECAY", "0"])
    assert pytest.approx(1e-4) == cfg.TRAIN.LR and isinstance(cfg.TRAIN.WEIGHT_DECAY, float)


def test_unregistered_part_lists_the_registered_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"MODEL\.ENCODER\.NAME: 'resnet' is not registered.*convnet, dinov2"
    ):
        load_config(QUICKSTART, ["MODEL.ENCODER.NAME", "resnet"])


def test_choosing_a_part_requires_its_keys_and_replaces_the_one_chosen_before() -> None:
    with pytest.raises(
        ConfigError, match=r"MODEL\.ENCODER\.DINOV2: missing; encoder 'dinov2' takes ARCH"
    ):
        load_config(QUICKSTART, ["MODEL.ENCODER.NAME", "dinov2"])
    cfg = load_config(
        QUICKSTART,
        [
            "MODEL.ENCODER.NAME", "dinov2",
            "MODEL.ENCODER.DINOV2.ARCH", "vit_small_patch14_dinov2",
            "MODEL.ENCODER.DINOV2.LAYERS", "[10, 11]",
            "MODEL.ENCODER.DINOV2.WEIGHTS", "null",
            "MODEL.ENCODER.DINOV2.FREEZE", "true",
            "MODEL.ENCODER.DINOV2.FINAL_NORM", "false",
        ],
    )  # fmt: skip
    assert "CONVNET" not in cfg.MODEL.ENCODER and cfg.MODEL.ENCODER.DINOV2.WEIGHTS is None


def test_keys_of_a_part_that_is_not_chosen_are_refused(tmp_path: Path) -> None:
    assert load_config(QUICKSTART, []).TRAIN.OPTIMIZER.NAME == "adam"
    with pytest.raises(
        ConfigError,
        match=r"TRAIN\.OPTIMIZER\.SGD: sets optimizer 'sgd', which is not chosen "
        r"\(TRAIN\.OPTIMIZER\.NAME: adam\) in --opts",
    ):
        load_config(QUICKSTART, ["TRAIN.OPTIMIZER.SGD.MOMENTUM", "0.9"])
    # a later file (or --opts) choosing another part replaces the part chosen before
    sgd = "TRAIN:\n  OPTIMIZER:\n    NAME: sgd\n    SGD:\n      MOMENTUM: 0.9\n"
    sgd += "      NESTEROV: false\n"
    child = tmp_path / "child.yaml"
    # outside configs/, so no run folder is derived: the file names one
    child.write_text(f"_BASE_: [{QUICKSTART.resolve()}]\nOUTPUT_DIR: run\n{sgd}")
    optimizer = load_config(child, []).TRAIN.OPTIMIZER
    assert "ADAM" not in optimizer and optimizer.SGD.MOMENTUM == 0.9
    switched = ["TRAIN.OPTIMIZER.NAME", "sgd", "TRAIN.OPTIMIZER.SGD.MOMENTUM", "0.5"]
    cfg = load_config(QUICKSTART, [*switched, "TRAIN.OPTIMIZER.SGD.NESTEROV", "true"])
    assert "ADAM" not in cfg.TRAIN.OPTIMIZER
    # ... but a file setting the keys of a part it does not choose is refused, naming the file
    unused = tmp_path / "unused.yaml"
    unused.write_text(
        "_BASE_: [child.yaml]\nTRAIN:\n  OPTIMIZER:\n    ADAM:\n      BETAS: [0.9, 0.99]\n"
    )
    with pytest.raises(
        ConfigError, match=rf"OPTIMIZER\.ADAM: .*not chosen .*NAME: sgd\) in {unused}"
    ):
        load_config(unused, [])


def test_missing_file_and_base_cycle(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml", [])
    (tmp_path / "a.yaml").write_text("_BASE_: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("_BASE_: [a.yaml]\n")
    with pytest.raises(ConfigError, match=r"_BASE_ cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml", [])
    (tmp_path / "c.yaml").write_text("_BASE_: [missing_base.yaml]\n")
    with pytest.raises(ConfigError, match=r"missing_base\.yaml \(a _BASE_ of .*c\.yaml\)"):
        load_config(tmp_path / "c.yaml", [])


def test_every_config_in_the_repository_loads_and_runs_in_a_folder_of_its_own() -> None:
    """Catches two runs sharing one OUTPUT_DIR, where the second would be refused or, with
    --overwrite, replace the first: e.g. a config based on another run config that writes its
    OUTPUT_DIR by hand (saliency_probe/scratch.yaml on readout.yaml), which inherits that folder
    unless it sets ``OUTPUT_DIR: null`` to derive its own."""
    files = [p for p in Path("configs").rglob("*.yaml") if "_base_" not in p.parts]
    assert files
    folders: dict[str, str] = {}
    for path in files:
        if is_pipeline_file(path):
            runs = load_pipeline(path, []).runs  # resolves every stage of every fold
            configs = [(f"{path} ({run.stage}, fold {run.fold})", run.cfg) for run in runs]
        else:
            configs = [(str(path), load_config(path, []))]
        for name, cfg in configs:
            other = folders.setdefault(cfg.OUTPUT_DIR, name)
            assert other == name, f"{name} and {other} both run in {cfg.OUTPUT_DIR}"


def test_a_null_output_dir_is_the_config_path_below_configs_and_a_written_one_wins(
    tmp_path: Path,
) -> None:
    """OUTPUT_DIR null (configs/_base_/runtime.yaml) -> output/<path below configs/ without
    .yaml>, the same from any working directory's spelling of the path; a value in the file, in
    a base, or in --opts wins; a file outside a configs/ folder, or a base, derives none.
    Catches a folder derived from the base that holds the null, from the file name alone (two
    runs of one name in different folders would share it) or with the suffix kept."""
    assert load_config(QUICKSTART, []).OUTPUT_DIR == "output/quickstart"
    blur = Path("configs/03_mr_cnn/mit1003/blur.yaml")
    assert load_config(blur, []).OUTPUT_DIR == "output/03_mr_cnn/mit1003/blur"
    assert load_config(blur.resolve(), []).OUTPUT_DIR == "output/03_mr_cnn/mit1003/blur"
    assert load_config(blur, ["OUTPUT_DIR", "mine"]).OUTPUT_DIR == "mine"
    experiment = tmp_path / "configs" / "07_mine"
    experiment.mkdir(parents=True)
    base = f"_BASE_: [{QUICKSTART.resolve()}]\n"
    (experiment / "derived.yaml").write_text(base)
    (experiment / "written.yaml").write_text(base + "OUTPUT_DIR: elsewhere\n")
    (experiment / "inherits.yaml").write_text("_BASE_: [written.yaml]\n")
    (experiment / "own.yaml").write_text("_BASE_: [written.yaml]\nOUTPUT_DIR: null\n")
    folder = {p.stem: load_config(p, []).OUTPUT_DIR for p in experiment.iterdir()}
    assert folder == {"derived": "output/07_mine/derived", "written": "elsewhere",
                      "inherits": "elsewhere", "own": "output/07_mine/own"}  # fmt: skip
    assert load_config(experiment / "written.yaml", ["OUTPUT_DIR", "x"]).OUTPUT_DIR == "x"
    outside = tmp_path / "derived.yaml"
    outside.write_text(base)
    with pytest.raises(ConfigError, match=rf"{outside} is not one; set OUTPUT_DIR"):
        load_config(outside, [])
    assert load_config(outside, ["OUTPUT_DIR", "x"]).OUTPUT_DIR == "x"
    with pytest.raises(ConfigError, match=r"cpu_osie\.yaml is not one; set OUTPUT_DIR"):
        load_config("configs/03_mr_cnn/_base_/cpu_osie.yaml", [])


@pytest.mark.parametrize("config", [QUICKSTART, "configs/03_mr_cnn/faithful.yaml",
                                    "configs/06_attention/full/shifted_window.yaml",
                                    "configs/05_neva/reconstruction.yaml"])  # fmt: skip
def test_typed_view_declares_every_key_of_a_resolved_config(config: str) -> None:
    """Every key of a resolved config is an attribute chain of the rendered view, from
    ``Config`` down through each node's Protocol (parts, sub-parts and their chosen nodes).
    Catches a node, a part's options or a leaf left out of ``code/config_types.pyi``."""
    view = ast.parse(render_typed_view())
    classes = {
        node.name: {item.target.id: ast.unparse(item.annotation) for item in node.body
                    if isinstance(item, ast.AnnAssign)}
        for node in view.body if isinstance(node, ast.ClassDef)
    }  # fmt: skip
    cfg = load_config(config, [])
    for key in flat_keys(yaml.safe_load(cfg.dump())):
        owner = "Config"
        for name in key.split("."):
            assert name in classes[owner], f"{key}: {name} not declared in {owner}"
            owner = classes[owner][name]
    assert TYPED_VIEW.suffix == ".pyi"  # a stub beside code/config.py, written on demand


NEVA = "configs/05_neva/reconstruction.yaml"
FOVEATION = "TASK.SCANPATH_GENERATION.FOVEATION"


def test_a_value_a_sub_node_refuses_is_named_by_its_full_key() -> None:
    """The foveation's class refuses a value by its own key; wherever its node lies (here the
    ``neva_foveation`` input stage's) the error names the full key. Catches a sub-node factory
    that forgets its path (the bare ``FOVEA_SIGMA``) or adds it twice."""
    from code.registry import INPUT_STAGES

    foveation = {"FOVEA_SIGMA": 0.0, "AMPLITUDE": 1.0, "BLUR_KERNEL": 5, "BLUR_SIGMA": 2.0,
                 "FORGETTING": 0.5}  # fmt: skip
    choice = CfgNode({"NAME": "neva_foveation",
                      "NEVA_FOVEATION": {"COUNT": 2, "FOVEATION": foveation}})  # fmt: skip
    full = r"^MODEL\.INPUT_STAGE\.NEVA_FOVEATION\.FOVEATION\.FOVEA_SIGMA must be positive"
    with pytest.raises(ConfigError, match=full + r", got 0\.0$"):
        INPUT_STAGES.build(choice)


def test_a_sub_node_is_declared_once_and_checked_as_any_node(tmp_path: Path) -> None:
    """A ``SubNode[CLASS]`` parameter is a node of the class's constructor keys: the NeVA task
    and the ``neva_foveation`` input stage declare the same foveation keys (the layer's), and
    a key misspelt, left out or of the wrong type there is refused naming it. Catches a
    sub-node whose keys are let through unchecked (its class would get them as written) or
    declared apart from its class."""
    from code.models.layers.foveation import Foveation
    from code.registry import INPUT_STAGES, TASKS

    declared = constructor_schema(Foveation, ())
    assert TASKS.schema("scanpath_generation")["FOVEATION"] == declared
    assert INPUT_STAGES.schema("neva_foveation")["FOVEATION"] == declared
    with pytest.raises(ConfigError, match=rf"unknown key {FOVEATION}.FOVEA_SIGMAS.*FOVEA_SIGMA"):
        load_config(NEVA, [f"{FOVEATION}.FOVEA_SIGMAS", "0.3"])
    with pytest.raises(ConfigError, match=rf"{FOVEATION}.BLUR_KERNEL: expected int"):
        load_config(NEVA, [f"{FOVEATION}.BLUR_KERNEL", "4.5"])
    cfg = yaml.safe_load(load_config(NEVA, []).dump())
    del cfg["TASK"]["SCANPATH_GENERATION"]["FOVEATION"]["AMPLITUDE"]
    written = tmp_path / "no_amplitude.yaml"
    written.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=rf"{FOVEATION}.AMPLITUDE: missing"):
        load_config(written, [])


def test_registry_rejects_duplicates_defaults_and_untyped_parameters() -> None:
    registry = Registry("widget", node=None, wiring=(), locations=())

    @registry.register("a")
    def make_a(size: int) -> int:
        return size

    with pytest.raises(KeyError, match="registered twice"):
        registry.register("a")(make_a)

    def with_default(size: int = 3) -> int:
        return size

    with pytest.raises(TypeError, match="has a default"):
        constructor_schema(with_default, wiring=())

    def untyped(size):
        return size

    with pytest.raises(TypeError, match="needs a type hint"):
        constructor_schema(untyped, wiring=())
    assert registry.schema("a") == {"SIZE": int}


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("TRAIN.EPOCHS", "0", "must be at least 1, got 0"),
        ("DATA.IMAGE_SIZE", "[96]", r"must be a list of 2 values, got \[96\]"),
        ("DATA.IMAGE_SIZE", "[0, 96]", r"must be a list of values at least 1, got \[0, 96\]"),
        ("TRAIN.LR", "-0.1", "must be at least 0, got -0.1"),
        ("DATA.SPLIT.VAL_FRACTION", "1.5", r"must be in \[0, 1\]"),
        ("TRAIN.PATIENCE", "0", "must be at least 1"),
        ("EVAL.CENTERBIAS_FOLDS", "1", "must be at least 2"),
    ],
)
def test_values_out_of_range_are_refused_when_the_config_loads(
    key: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=f"{re.escape(key)}: {says}.* in --opts"):
        load_config("configs/quickstart.yaml", [key, value])
    load_config("configs/quickstart.yaml", ["TRAIN.PATIENCE", "null"])  # None passes a check


def test_a_part_declares_checks_on_its_keys_in_its_type_hints() -> None:
    def part(width: Annotated[int, at_least(1)], name: str) -> None: ...

    schema = constructor_schema(part, wiring=())
    assert broken_check(0, schema["WIDTH"]).says == "at least 1"
    assert broken_check(3, schema["WIDTH"]) is None and schema["NAME"] is str


# Between them, these use every kind of part a configuration can choose (checked below).
PART_CONFIGS = (
    QUICKSTART,
    Path("configs/01_dinogaze_spade/cpu_osie/cross_attention.yaml"),  # a block's attention
    Path("configs/03_mr_cnn/blur.yaml"),  # an encoder's streams and their pre-filters
    Path("configs/04_focus_mim/cpu_osie/random_patches.yaml"),  # data sets inside data sets
    Path("configs/05_neva/reconstruction.yaml"),  # a task's criterion and scanpath generator
)


def _part_kinds(schema: dict, seen: set[str]) -> set[str]:
    """Every registry a configuration can choose from, at any depth (parts inside parts)."""
    for value in schema.values():
        if isinstance(value, Choice | Chain) and value.registry.kind not in seen:
            seen.add(value.registry.kind)
            for name in value.registry.names():
                _part_kinds(value.registry.schema(name), seen)
        elif isinstance(value, dict):
            _part_kinds(value, seen)
    return seen


def _part_nodes(schema: dict, node: dict, prefix: str) -> Iterator[tuple[str, Choice | Chain]]:
    """The nodes choosing parts in a loaded config (``MODEL.ENCODER``, ...), with their schema."""
    for key, value in schema.items():
        if isinstance(value, Choice | Chain):
            yield prefix + key, value
            names = node[key]["NAMES"] if isinstance(value, Chain) else [node[key]["NAME"]]
            for name in names:
                yield from _part_nodes(value.registry.schema(name), node[key][name.upper()],
                                       f"{prefix}{key}.{name.upper()}.")  # fmt: skip
        elif isinstance(value, dict):
            yield from _part_nodes(value, node[key], f"{prefix}{key}.")


def _misplaced_key(cfg: CfgNode, path: str, part: Choice | Chain) -> str:
    """A key of the chosen part written beside its ``NAME``, as one forgets the part's own node
    (``MODEL.ENCODER.CHANNELS`` for ``MODEL.ENCODER.CONVNET.CHANNELS``); a key of another part
    of the same kind when the chosen ones take none."""
    node = cfg
    for part_key in path.split("."):
        node = node[part_key]
    chosen = node["NAMES"] if isinstance(part, Chain) else [node["NAME"]]
    names = chosen + [n for n in part.registry.names() if n not in chosen]
    keys = [key for name in names for key in part.registry.schema(name)]
    return keys[0] if keys else "CHANNELS"


def test_an_unknown_key_beside_a_parts_name_is_refused_naming_it(tmp_path: Path) -> None:
    """Catches a part node (``MODEL.ENCODER``, ``DATA.TRANSFORMS``, a block's ``ATTENTION``, a
    data set inside a data set, ...) that lets keys other than its ``NAME``/``NAMES`` and the
    chosen parts' nodes through, in a file or in --opts: such a key would be silently dropped and
    the run would use the part's own value instead of the one the user wrote."""
    assert _part_kinds(SCHEMA, set()) == {
        part.registry.kind
        for path in PART_CONFIGS
        for _, part in _part_nodes(SCHEMA, load_config(path, []), "")
    }, "add a config that uses the new kind of part to PART_CONFIGS"
    tested: set[str] = set()
    for path in PART_CONFIGS:
        cfg = load_config(path, [])
        for node_path, part in _part_nodes(SCHEMA, cfg, ""):
            if node_path in tested:
                continue
            tested.add(node_path)
            key = f"{node_path}.{_misplaced_key(cfg, node_path, part)}"
            with pytest.raises(ConfigError, match=rf"--opts: unknown key {re.escape(key)}\b"):
                load_config(path, [key, "3"])
            written = tmp_path / "misplaced.yaml"
            tree: dict = {"_BASE_": [str(path.resolve())]}
            leaf = tree
            for part_key in key.split(".")[:-1]:
                leaf = leaf.setdefault(part_key, {})
            leaf[key.split(".")[-1]] = 3
            written.write_text(yaml.safe_dump(tree))
            with pytest.raises(
                ConfigError, match=rf"{re.escape(key)}: unknown key in {re.escape(str(written))}"
            ):
                load_config(written, [])
    assert {"MODEL.ENCODER", "DATA.TRANSFORMS", "MODEL.BLOCK.CROSS_ATTENTION.ATTENTION"} <= tested


# A part with a sub-part, each refusing a setting of its own node (below).
WIDGETS = Registry("widget", node="MODEL.WIDGET", wiring=(), locations=())
GEARS = Registry("gear", node=None, wiring=("teeth",), locations=())


@GEARS.register("spur")
def _spur(teeth: int, size: int) -> int:
    if size < teeth:
        raise ConfigError(f"{size} is below the {teeth} teeth", key="SIZE")
    return size


@WIDGETS.register("box")
def _box(width: int, gear: SubPart[GEARS]) -> int:
    if width < 1:
        raise ConfigError(f"must be at least 1, got {width}", key="WIDTH")
    if width > 9:
        raise ConfigError("is too wide for a box", key="")
    return gear(teeth=width)


def test_a_parts_refusal_names_the_full_key_where_the_registry_built_it() -> None:
    """Parts name keys relative to their own node; the registry that builds a part raises the
    error again under the node's full path, once: fails if the path is lost (bare ``WIDTH``),
    prefixed twice (the parent's registry again on the sub-part's error), or if a sub-part's
    key lands in its parent's node."""

    def node(width: int, size: int) -> CfgNode:
        gear = {"NAME": "spur", "SPUR": {"SIZE": size}}
        return CfgNode({"NAME": "box", "BOX": {"WIDTH": width, "GEAR": gear}})

    assert WIDGETS.build(node(2, 3)) == 3
    with pytest.raises(ConfigError, match=r"^MODEL\.WIDGET\.BOX\.WIDTH must be at least 1, got 0$"):
        WIDGETS.build(node(0, 3))
    with pytest.raises(ConfigError, match=r"^MODEL\.WIDGET\.BOX is too wide for a box$"):
        WIDGETS.build(node(10, 3))
    with pytest.raises(ConfigError, match=r"^MODEL\.WIDGET\.BOX\.GEAR\.SPUR\.SIZE 1 is below "):
        WIDGETS.build(node(2, 1))


def test_every_registry_names_the_node_the_schema_chooses_it_at() -> None:
    """A registry's ``node`` (which its parts' errors name) is where SCHEMA chooses its parts;
    fails when one of them moves and the other does not."""

    def choices(schema: dict, prefix: str) -> Iterator[tuple[str, Registry]]:
        for key, entry in schema.items():
            if isinstance(entry, Choice | Chain):
                yield f"{prefix}{key}", entry.registry
            elif isinstance(entry, dict):
                yield from choices(entry, f"{prefix}{key}.")

    found = dict(choices(SCHEMA, ""))
    assert found and all(registry.node == path for path, registry in found.items())


def test_importing_a_registrys_locations_registers_all_its_parts() -> None:
    """A registry imports its ``locations`` the first time it is asked for a part; a part that
    only something else registers (as NeVA's generators once were, through the task) is
    unknown to a process that has not imported that. Each distinct set of locations is imported
    alone, in a process of its own, and must register every part that importing every module
    registers."""
    import importlib
    import pkgutil
    import subprocess
    import sys

    import code
    import code.registry as registries

    for module in pkgutil.walk_packages(code.__path__, "code."):  # every part registered
        importlib.import_module(module.name)
    found = {name: value for name, value in vars(registries).items()
             if isinstance(value, registries.Registry)}  # fmt: skip
    assert len(found) > 10
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, registry in found.items():
        groups.setdefault(tuple(registry.locations), []).append(name)
    script = (
        "import importlib, sys, code.registry as r\n"
        "for module in sys.argv[2:]: importlib.import_module(module)\n"
        "print({n: sorted(getattr(r, n)._entries) for n in sys.argv[1].split(',')})"
    )
    alone = {
        locations: subprocess.Popen(
            [sys.executable, "-c", script, ",".join(names), *locations],
            stdout=subprocess.PIPE, text=True,
        )
        for locations, names in groups.items()
    }  # fmt: skip
    for locations, process in alone.items():
        registered = ast.literal_eval(process.communicate(timeout=120)[0])
        for name in groups[locations]:
            assert registered[name] == sorted(found[name].names()), (name, locations)


def test_a_saved_configuration_older_than_an_added_key_reads_it_with_its_old_meaning(
    tmp_path: Path,
) -> None:
    """A checkpoint or finished stage saved before a key existed keeps loading and matching; a
    config file must still set the key."""
    cfg = load_config(QUICKSTART, [])
    old = yaml.safe_load(cfg.dump())
    for key in ADDED_KEYS:
        *path, leaf = key.split(".")
        node = old
        for name in path:
            node = node[name]
        del node[leaf]
    text = yaml.safe_dump(old, sort_keys=False)
    loaded = load_config_text(text, [])
    assert flat_keys(loaded) == flat_keys(cfg)
    assert loaded.DATA.SPLIT.EACH_DATASET is False
    saved = tmp_path / "config.yaml"
    saved.write_text(text)
    assert changed_keys(saved, cfg) == []
    assert changed_keys(saved, load_config(QUICKSTART, ["DATA.SPLIT.EACH_DATASET", "true"])) == [
        "DATA.SPLIT.EACH_DATASET (False -> True)"
    ]
    with pytest.raises(ConfigError, match=r"DATA\.SPLIT\.EACH_DATASET: missing"):
        load_config(saved, [])
