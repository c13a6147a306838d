"""Registries of the parts a configuration can name.

A part registers under a lower-case name; its constructor's keyword parameters (type-hinted, no
defaults) are the configuration keys it takes, upper-cased, under a node named after it, e.g.
``MODEL.ENCODER.CONVNET.CHANNELS`` for ``ConvNetEncoder(channels: list[int], ...)``. Parameters
listed in ``Registry.wiring`` are supplied by the builder (shapes announced by the previous part),
not by the configuration.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """A name -> constructor table for one kind of part (encoders, blocks, decoders, ...)."""

    def __init__(self, kind: str, wiring: tuple[str, ...]) -> None:
        self.kind = kind
        self.wiring = wiring
        self._entries: dict[str, Callable[..., Any]] = {}

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
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def schema(self, name: str) -> dict[str, Any]:
        """The configuration keys ``name`` takes: UPPER_CASE parameter name -> type hint."""
        return constructor_schema(self.get(name), self.wiring)

    def build(self, choice: Any, **wiring: Any) -> Any:
        """Construct the part a choice node names (``NAME`` + its node) plus the wiring.

        A part receives only the wiring parameters its constructor declares.
        """
        name = choice.NAME
        node = choice.get(name.upper(), {})
        kwargs = {key.lower(): node[key] for key in self.schema(name)}
        obj = self.get(name)
        declared = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
        return obj(**kwargs, **{k: v for k, v in wiring.items() if k in declared})


def constructor_schema(obj: Callable[..., Any], wiring: tuple[str, ...]) -> dict[str, Any]:
    """Map each configurable parameter of ``obj`` (class or function) to its type hint."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    hints = typing.get_type_hints(target)
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
        schema[param.name.upper()] = hints[param.name]
    return schema


def _qualname(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


ENCODERS = Registry("encoder", wiring=())
BLOCKS = Registry("block", wiring=("input_shapes",))
DECODERS = Registry("decoder", wiring=("input_shapes",))
DATASETS = Registry("dataset", wiring=())
# How training items are made from per-image samples (one per image, one per scanpath, ...).
SAMPLES = Registry("samples", wiring=("images", "dataset"))
# Where segment label maps come from (files, k-means on encoder features, none).
SEGMENTERS = Registry("segmenter", wiring=("encoder",))
OPTIMIZERS = Registry("optimizer", wiring=("params", "lr", "weight_decay"))
SCHEDULERS = Registry("lr schedule", wiring=("optimizer", "epochs"))
