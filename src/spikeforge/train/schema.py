"""The recipe as data: :class:`Recipe` and strict validation of TOML tables into dataclasses.

A recipe has three fixed sections, ``[model]``, ``[data]`` and ``[train]``, and one optional section
per training method (``[hybrid]``, ``[develop]``, ...). The fixed sections are typed fields; method
sections live in :attr:`Recipe.methods` (section name -> that method's config dataclass), because the
methods plug into the engine (:mod:`.registry`) and this module knows none of them. Typed code reads
a method's section with ``recipe.section(HybridConfig)``.

Validation is strict: an unknown key, a value of the wrong type, NaN or an infinity is rejected with
its key path and the expected type (``train.optimizer.lr: expected float, got str 'fast'``). Ranges
are checked by :mod:`.validate`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from ..data.config import DataConfig
from ..models import ModelConfig
from .config import TrainConfig

C = TypeVar("C")
CORE_SECTIONS = ("model", "data", "train")
SCALAR_FIELDS = ("name", "description")


class RecipeError(ValueError):
    """A recipe that does not match the schema."""


@dataclass(init=False)
class Recipe:
    """A validated recipe. ``Recipe(hybrid=HybridConfig(...))`` puts a method's section into ``methods``."""

    name: str
    description: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    methods: dict[str, object]  # method section name -> its config dataclass

    def __init__(self, name: str = "", description: str = "", model: ModelConfig | None = None,
                 data: DataConfig | None = None, train: TrainConfig | None = None,
                 methods: dict[str, object] | None = None, **sections: object) -> None:
        self.name, self.description = name, description
        self.model = model or ModelConfig()
        self.data = data or DataConfig()
        self.train = train or TrainConfig()
        self.methods = {k: v for k, v in {**(methods or {}), **sections}.items() if v is not None}

    def section(self, cls: type[C]) -> C | None:
        """The method section whose config class is ``cls`` (``None`` when the recipe has none)."""
        for cfg in self.methods.values():
            if isinstance(cfg, cls):
                return cfg
        return None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert_union(value: Any, tp: Any, path: str) -> Any:
    if value is None:
        return None
    errors = []
    for a in [a for a in typing.get_args(tp) if a is not type(None)]:
        try:
            return convert(value, a, path)
        except RecipeError as e:
            errors.append(str(e))
    raise RecipeError(errors[0])


def _convert_container(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise RecipeError(f"{path}: expected a list of {_type_name(item)}, got {type(value).__name__} {value!r}")
        return [convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    _, val_tp = typing.get_args(tp)
    if not isinstance(value, dict):
        raise RecipeError(f"{path}: expected a table of {_type_name(val_tp)}, got {type(value).__name__}")
    return {k: convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}


def convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` (parsed TOML/JSON) checked against the type ``tp``; errors name ``path``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, tp, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: expected a table ({_type_name(tp)}), got {type(value).__name__} {value!r}")
        return build_dataclass(tp, value, path)  # type: ignore[arg-type]
    if origin in (list, dict):
        return _convert_container(value, tp, path)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"{path}: expected float, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise RecipeError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if type(value) is not tp:
            raise RecipeError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise RecipeError(f"{path}: unsupported schema type {tp!r}")


def build_dataclass(cls: type[C], data: dict[str, Any], path: str = "") -> C:
    """Validate ``data`` against dataclass ``cls`` (recursively) and build it."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else key
        if key not in names:
            raise RecipeError(f"{key_path}: unknown key; expected one of {sorted(names)}")
        kwargs[key] = convert(value, hints[key], key_path)
    return cls(**kwargs)


def build_core(doc: dict[str, Any]) -> Recipe:
    """A recipe from the scalar fields and the fixed sections of ``doc`` (method sections are left out)."""
    hints = typing.get_type_hints(Recipe)
    kwargs = {key: convert(doc[key], hints[key], key) for key in (*SCALAR_FIELDS, *CORE_SECTIONS) if key in doc}
    return Recipe(**kwargs)
