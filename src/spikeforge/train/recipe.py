"""Recipes: TOML files validated into dataclasses.

A recipe is a TOML document whose tables mirror :class:`Recipe`. Validation is strict: an
unknown key or a value of the wrong type is rejected with its key path and the expected type
(``train.optimizer.lr: expected float, got str 'fast'``). ``--set a.b=value`` overrides parse
``value`` as a TOML value (falling back to a bare string).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.config import DataConfig
from ..develop.config import DevelopConfig
from ..hybrid.config import HybridConfig
from ..models import ModelConfig
from .config import TrainConfig


@dataclass
class Recipe:
    name: str = ""
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hybrid: HybridConfig | None = None
    develop: DevelopConfig | None = None


class RecipeError(ValueError):
    """A recipe that does not match the schema."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for a in args:
            try:
                return _convert(value, a, path)
            except RecipeError as e:
                errors.append(str(e))
        raise RecipeError(errors[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: expected a table ({tp.__name__}), got {type(value).__name__} {value!r}")
        return build_dataclass(tp, value, path)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise RecipeError(f"{path}: expected a list of {_type_name(item)}, got {type(value).__name__} {value!r}")
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: expected a table of {_type_name(val_tp)}, got {type(value).__name__}")
        return {k: _convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"{path}: expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if type(value) is not tp:
            raise RecipeError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise RecipeError(f"{path}: unsupported schema type {tp!r}")


def build_dataclass(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Validate ``data`` against dataclass ``cls`` (recursively) and build it."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else key
        if key not in names:
            raise RecipeError(f"{key_path}: unknown key; expected one of {sorted(names)}")
        kwargs[key] = _convert(value, hints[key], key_path)
    return cls(**kwargs)


def _set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {dotted}: {p} is not a table")
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.optimizer.lr=0.05"`` → ``("train.optimizer.lr", 0.05)``."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def packaged_recipes() -> dict[str, str]:
    """Names and one-line descriptions of the recipes shipped in the package."""
    out = {}
    for entry in sorted(importlib.resources.files("spikeforge.recipes").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            doc = tomllib.loads(entry.read_text())
            out[entry.name[:-5]] = str(doc.get("description", ""))
    return out


def recipe_document(name_or_path: str) -> tuple[dict[str, Any], str]:
    """The raw TOML table of a packaged recipe name or a file path, and where it came from."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist")
        text, origin = path.read_text(), str(path)
    else:
        res = importlib.resources.files("spikeforge.recipes") / f"{name_or_path}.toml"
        if not res.is_file():
            raise RecipeError(f"unknown recipe {name_or_path!r}; packaged recipes: {sorted(packaged_recipes())}")
        text, origin = res.read_text(), f"packaged recipe {name_or_path}"
    try:
        return tomllib.loads(text), origin
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{origin}: invalid TOML: {e}") from None


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Load a packaged recipe by name or a TOML file, apply ``KEY=VALUE`` overrides, validate."""
    doc, origin = recipe_document(name_or_path)
    for text in overrides or []:
        _set_path(doc, *parse_override(text))
    try:
        recipe = build_dataclass(Recipe, doc)
    except RecipeError as e:
        raise RecipeError(f"{origin}: {e}") from None
    if not recipe.name:
        recipe.name = Path(name_or_path).stem
    return recipe


def recipe_from_dict(doc: dict[str, Any]) -> Recipe:
    return build_dataclass(Recipe, doc)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(obj: Any, table: str = "") -> str:
    """Serialise a recipe (nested dataclasses) to TOML; ``None`` sections are omitted."""
    scalars, tables = [], []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None:
            continue
        if dataclasses.is_dataclass(v):
            tables.append(to_toml(v, f"{table}.{f.name}" if table else f.name))
        else:
            scalars.append(f"{f.name} = {_toml_value(v)}")
    head = [f"[{table}]"] if table else []
    return "\n".join(head + scalars) + "\n" + "".join("\n" + t for t in tables)
