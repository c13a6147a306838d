"""Registries of the parts a configuration can name.

A part registers under a lower-case name; its constructor's keyword parameters (type-hinted, no
defaults) are the configuration keys it takes, upper-cased, under a node named after it, e.g.
``MODEL.ENCODER.CONVNET.CHANNELS`` for ``ConvNetEncoder(channels: list[int], ...)``. A parameter
typed ``SubPart[REGISTRY]`` chooses a sub-part by ``NAME`` under its own node; one typed
``SubNode[CLASS]`` is a node of ``CLASS``'s constructor keys (no choice). Parameters
listed in ``Registry.wiring`` are supplied by the builder (shapes announced by the previous part),
not by the configuration.

A registry names the packages that register its parts (``locations``) and imports them the
first time it is asked for a part, so a layer that only *chooses* parts (the configuration, the
data pipeline) never imports the layers that implement them.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from yacs.config import CfgNode

T = TypeVar("T", bound=Callable[..., Any])


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names every offending key and file.

    A part refusing its own settings gives the ``key`` relative to its own node
    (``"RESOLUTIONS"``, ``"DEPTHS[1]"``; ``""``: the node itself) and the ``reason``
    (``"[30, 20]: images resized to [20] are smaller ..."``). The registry that builds the part
    knows where its node lies and raises the error again under the full key
    (``MODEL.ENCODER.MULTIRES.RESOLUTIONS [30, 20]: ...``), so no part spells out its place in
    the configuration. ``key`` None: the message is complete as it is.
    """

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason if not key else f"{key} {reason}")
        self.reason = reason
        self.key = key

    def under(self, path: str) -> ConfigError:
        """This error with its key in the node at ``path``, complete."""
        return ConfigError(
            f"{path}.{self.key} {self.reason}" if self.key else f"{path} {self.reason}"
        )


class Registry:
    """A name -> constructor table for one kind of part (encoders, blocks, decoders, ...).

    ``node``: the configuration node whose ``NAME`` chooses the part (``MODEL.ENCODER``), which
    its errors name; None for sub-parts, which their parent's node locates.
    """

    def __init__(
        self, kind: str, node: str | None, wiring: tuple[str, ...], locations: tuple[str, ...]
    ) -> None:
        self.kind = kind
        self.node = node
        self.wiring = wiring
        self.locations = locations
        self._entries: dict[str, Callable[..., Any]] = {}
        self._loaded = False

    def _load(self) -> None:
        """Import the packages that register this registry's parts (once)."""
        if not self._loaded:
            self._loaded = True
            for module in self.locations:
                importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a class or function under ``name`` (lower case, unique)."""
        if name != name.lower():
            raise ValueError(f"{self.kind} name {name!r} must be lower case")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise KeyError(
                    f"{self.kind} {name!r} is registered twice: "
                    f"{_qualname(self._entries[name])} and {_qualname(obj)}"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        self._load()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def schema(self, name: str) -> dict[str, Any]:
        """The configuration keys ``name`` takes: UPPER_CASE parameter name -> type hint."""
        return constructor_schema(self.get(name), self.wiring)

    def build(self, choice: Any, **wiring: Any) -> Any:
        """Construct the part a choice node (at ``self.node``) names (``NAME`` + its node) plus
        the wiring.

        A part receives only the wiring parameters its constructor declares; a sub-part it
        chooses (a parameter typed ``SubPart[REGISTRY]``) arrives as a ``PartFactory``, the
        sub-parts it lists (``SubParts[REGISTRY]``) as a list of them, and a fixed sub-node
        (``SubNode[CLASS]``) as a ``NodeFactory``.
        """
        return self.build_at(self.node, choice, wiring)

    def build_chain(self, chain: Any, **wiring: Any) -> list[Any]:
        """The parts a chain node lists in ``NAMES``, in order, each from its own node."""
        return [
            self._construct(name, chain.get(name.upper(), {}), _under(self.node, name), wiring)
            for name in chain.NAMES
        ]

    def build_at(self, path: str | None, choice: Any, wiring: dict[str, Any]) -> Any:
        """``build`` for a choice node at ``path`` (None: unknown, errors name the part's node
        alone)."""
        name = choice.NAME
        return self._construct(name, choice.get(name.upper(), {}), _under(path, name), wiring)

    def _construct(self, name: str, node: Any, path: str, wiring: dict[str, Any]) -> Any:
        """Part ``name`` from its ``node`` at ``path``; a ``ConfigError`` it raises naming a
        key of its own is raised again under the full key."""
        kwargs = {
            key.lower(): _configured(hint, node[key], f"{path}.{key}")
            for key, hint in self.schema(name).items()
        }
        obj = self.get(name)
        declared = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
        wired = {k: v for k, v in wiring.items() if k in declared}
        return _named_under(path, lambda: obj(**kwargs, **wired))


def _named_under(path: str, construct: Callable[[], Any]) -> Any:
    """What ``construct`` builds from the node at ``path``; a ``ConfigError`` naming a key of
    that node is raised again under the full key."""
    try:
        return construct()
    except ConfigError as err:
        if err.key is None:
            raise
        raise err.under(path) from err


def _under(path: str | None, name: str) -> str:
    """The full key of part ``name``'s node in the choice node at ``path``."""
    return name.upper() if path is None else f"{path}.{name.upper()}"


@dataclass(frozen=True)
class Choice:
    """A configuration node choosing one part of ``registry`` by ``NAME``; its node
    ``NAME.upper()`` holds that part's keys."""

    registry: Registry


@dataclass(frozen=True)
class Chain:
    """A configuration node listing parts of ``registry`` to apply in turn: ``NAMES`` (possibly
    empty), and a node ``NAME.upper()`` of keys for each part listed."""

    registry: Registry


@dataclass(frozen=True)
class Check:
    """A constraint on a configuration value, declared with its key: ``Annotated[int,
    at_least(1)]`` in the schema or a part's type hint. It is tested when the config loads (not
    on ``None``); ``says`` completes "must be ..."."""

    test: Callable[[Any], bool]
    says: str


def at_least(bound: float) -> Check:
    return Check(lambda value: value >= bound, f"at least {bound}")


def above(bound: float) -> Check:
    return Check(lambda value: value > bound, f"greater than {bound}")


def between(low: float, high: float) -> Check:
    return Check(lambda value: low <= value <= high, f"in [{low}, {high}]")


def length(count: int) -> Check:
    return Check(lambda value: len(value) == count, f"a list of {count} values")


def each(check: Check) -> Check:
    return Check(lambda value: all(check.test(v) for v in value), f"a list of values {check.says}")


def broken_check(value: Any, hint: Any) -> Check | None:
    """The first ``Check`` annotated on ``hint`` that ``value`` fails (``None`` passes all)."""
    if value is None or typing.get_origin(hint) is not Annotated:
        return None
    checks = [m for m in hint.__metadata__ if isinstance(m, Check)]
    return next((check for check in checks if not check.test(value)), None)


class PartFactory:
    """A configured sub-part: its parent calls it with the wiring it supplies (e.g. channels).

    So a block can build one attention mechanism per feature map from one config node.
    """

    def __init__(self, registry: Registry, choice: Any, path: str | None) -> None:
        self.registry = registry
        self.choice = choice
        self.path = path  # of the choice node, which errors name; None: unknown

    @property
    def name(self) -> str:
        return self.choice.NAME

    def __call__(self, **wiring: Any) -> Any:
        return self.registry.build_at(self.path, self.choice, wiring)

    def __repr__(self) -> str:
        return f"{self.registry.kind} {self.name!r}"


class NodeSchema(dict):
    """The schema entry of a ``SubNode[CLASS]`` parameter: a plain node of ``CLASS``'s
    constructor keys (the configuration reads it as any node), remembering the class."""

    def __init__(self, cls: type) -> None:
        super().__init__(constructor_schema(cls, ()))
        self.cls = cls


class NodeFactory:
    """A configured sub-node: its parent calls it to build the node's class from its keys; a
    value the class refuses is named by its full key."""

    def __init__(self, schema: NodeSchema, node: Any, path: str) -> None:
        self.schema = schema
        self.node = node
        self.path = path  # of the sub-node, which the keys it refuses are named under

    def __call__(self) -> Any:
        kwargs = {
            key.lower(): _configured(hint, self.node[key], f"{self.path}.{key}")
            for key, hint in self.schema.items()
        }
        return _named_under(self.path, lambda: self.schema.cls(**kwargs))


def _configured(hint: Any, value: Any, path: str) -> Any:
    """A constructor argument from its schema entry and node at ``path``: sub-parts and
    sub-nodes as factories."""
    if isinstance(hint, NodeSchema):
        return NodeFactory(hint, value, path)
    if isinstance(hint, Choice):
        return PartFactory(hint.registry, value, path)
    if isinstance(hint, Chain):
        return [
            PartFactory(
                hint.registry, CfgNode({"NAME": name, name.upper(): value[name.upper()]}), path
            )
            for name in value.NAMES
        ]
    return value


class _SubPartHint:
    """``SubPart[REGISTRY]``: the type hint of a constructor parameter that chooses a sub-part
    by ``NAME`` under the parameter's node, e.g. ``MODEL.BLOCK.CROSS_ATTENTION.ATTENTION``."""

    def __getitem__(self, registry: Registry) -> Any:
        return Annotated[PartFactory, registry]


SubPart = _SubPartHint()


class _SubPartsHint:
    """``SubParts[REGISTRY]``: the type hint of a constructor parameter listing sub-parts in
    ``NAMES`` under the parameter's node (each with its own node), e.g. the data sets of
    ``DATA.DATASET.CONCAT.DATASETS``."""

    def __getitem__(self, registry: Registry) -> Any:
        return Annotated[list[PartFactory], registry]


SubParts = _SubPartsHint()


@dataclass(frozen=True)
class _Node:
    cls: type


class _SubNodeHint:
    """``SubNode[CLASS]``: the type hint of a constructor parameter configured by a node of
    ``CLASS``'s own constructor keys, without a ``NAME`` (one kind of object, not a choice):
    e.g. the foveation of ``TASK.SCANPATH_GENERATION.FOVEATION``. Every part taking one
    declares the same keys, once, in ``CLASS``."""

    def __getitem__(self, cls: type) -> Any:
        return Annotated[NodeFactory, _Node(cls)]


SubNode = _SubNodeHint()


def constructor_schema(obj: Callable[..., Any], wiring: tuple[str, ...]) -> dict[str, Any]:
    """Map each configurable parameter of ``obj`` (class or function) to its type hint."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    hints = typing.get_type_hints(target, include_extras=True)
    schema: dict[str, Any] = {}
    for param in inspect.signature(target).parameters.values():
        if param.name == "self" or param.name in wiring:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{_qualname(obj)}: *args/**kwargs cannot be configured")
        if param.default is not inspect.Parameter.empty:
            raise TypeError(
                f"{_qualname(obj)}: parameter {param.name!r} has a default; "
                "configured values must come from the config"
            )
        if param.name not in hints:
            raise TypeError(f"{_qualname(obj)}: parameter {param.name!r} needs a type hint")
        schema[param.name.upper()] = _schema_entry(hints[param.name])
    return schema


def _schema_entry(hint: Any) -> Any:
    """A parameter's type hint as a schema entry: a ``Choice`` for a sub-part, a ``Chain`` for a
    list of them, a ``NodeSchema`` for a sub-node, else the type."""
    if typing.get_origin(hint) is Annotated:
        nodes = [m for m in hint.__metadata__ if isinstance(m, _Node)]
        if nodes:
            return NodeSchema(nodes[0].cls)
        registries = [m for m in hint.__metadata__ if isinstance(m, Registry)]
        if registries:
            listed = typing.get_origin(typing.get_args(hint)[0]) is list
            return (Chain if listed else Choice)(registries[0])
        if any(isinstance(m, Check) for m in hint.__metadata__):
            return hint  # checked when the config loads
        return typing.get_args(hint)[0]
    return hint


def _qualname(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


MODELS = ("code.models",)
DATA = ("code.data",)
ENGINE = ("code.engine.optim",)

ENCODERS = Registry("encoder", node="MODEL.ENCODER", wiring=(), locations=MODELS)
BLOCKS = Registry("block", node="MODEL.BLOCK", wiring=("input_shapes",), locations=MODELS)
# A decoder may take the encoder's attention mechanism (``Encoder.attention``) as it takes shapes.
DECODERS = Registry(
    "decoder", node="MODEL.DECODER", wiring=("input_shapes", "encoder_attention"), locations=MODELS
)
# What the encoder sees of the batch (identity; masking and foveation come with their systems).
INPUT_STAGES = Registry("input stage", node="MODEL.INPUT_STAGE", wiring=(), locations=MODELS)
# Attention mechanisms, a sub-part of the parts that attend (``SubPart[ATTENTIONS]``); a part
# that stacks blocks also supplies each block's index inside its stage (``block_index``), on
# which Swin's shifted windows alternate.
ATTENTIONS = Registry(
    "attention", node=None, wiring=("channels", "num_heads", "block_index"), locations=MODELS
)
# The streams of a multi-resolution encoder (``SubPart[STREAMS]``), one per resolution, each
# built for the crop size it sees; and the pre-filters (blurs) in front of them.
STREAMS = Registry("stream", node=None, wiring=("crop_size",), locations=MODELS)
PREFILTERS = Registry("prefilter", node=None, wiring=("streams",), locations=MODELS)
DATASETS = Registry("dataset", node="DATA.DATASET", wiring=(), locations=DATA)
# How training items are made from per-image samples (one per image, one per scanpath, ...).
SAMPLES = Registry(
    "samples", node="DATA.SAMPLES", wiring=("images", "dataset", "seed"), locations=DATA
)
# Seeded per-item changes to samples after the cache (flips, crops), chained in DATA.TRANSFORMS.
TRANSFORMS = Registry("transform", node="DATA.TRANSFORMS", wiring=(), locations=DATA)
# Where segment label maps come from (files, k-means on encoder features, none).
SEGMENTERS = Registry(
    "segmenter", node="DATA.SEGMENTS", wiring=("encoder",), locations=(*DATA, *MODELS)
)
OPTIMIZERS = Registry(
    "optimizer", node="TRAIN.OPTIMIZER", wiring=("params", "lr", "weight_decay"), locations=ENGINE
)
SCHEDULERS = Registry(
    "lr schedule", node="TRAIN.SCHEDULER", wiring=("optimizer", "epochs"), locations=ENGINE
)
# Momentum set before every optimizer step from the step number (so a resume repeats it).
MOMENTUM_SCHEDULES = Registry(
    "momentum schedule", node="TRAIN.MOMENTUM_SCHEDULE", wiring=("total_steps",), locations=ENGINE
)
# NeVA's downstream criteria (``SubPart[CRITERIA]``), built per batch of images for the frozen
# downstream model, and its scanpath generators (``SubPart[GENERATORS]``), seeded by the run:
# NeVA's, and the one sampling a trained checkpoint, with the tasks (it loads the checkpoint).
NEVA = ("code.models.neva",)
CRITERIA = Registry("criterion", node=None, wiring=("downstream", "images"), locations=NEVA)
GENERATORS = Registry(
    "scanpath generator",
    node=None,
    wiring=("seed",),
    locations=(*NEVA, "code.tasks.sampled_scanpaths"),
)
# What a run does: train and score a density model, classify patches, generate scanpaths, ...
TASKS = Registry("task", node="TASK", wiring=("cfg",), locations=("code.tasks",))
