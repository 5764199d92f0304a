"""Recipes: TOML files validated into a :class:`~spikeforge.train.schema.Recipe`.

A recipe is a TOML document with the scalars ``name`` and ``description``, the tables ``[model]``,
``[data]``, ``[train]`` and one optional table per registered training method (``[hybrid]``,
``[develop]``; :mod:`.registry`). Validation is strict (:mod:`.schema`). ``--set a.b=value`` overrides
parse ``value`` as a TOML value (falling back to a bare string).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from pathlib import Path
from typing import Any

from .registry import active_methods, registered_methods
from .schema import CORE_SECTIONS, SCALAR_FIELDS, Recipe, RecipeError, build_core, build_dataclass, convert
from .validate import validate_recipe

__all__ = ["Recipe", "RecipeError", "build_dataclass", "load_recipe", "packaged_recipes", "parse_override",
           "recipe_document", "recipe_from_dict", "recipe_to_dict", "to_toml"]


def _set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {dotted}: {p} is not a table")
    if isinstance(node.get(leaf), dict) and not isinstance(value, dict) or not parents and leaf in CORE_SECTIONS:
        raise RecipeError(f"--set {dotted}={value!r}: {dotted} is a section of settings, not a value; set one of "
                          f"its keys, e.g. --set {dotted}.KEY=VALUE")
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
            raise RecipeError(f"recipe file {path} " + ("is not a file" if path.exists() else "does not exist"))
        try:
            text, origin = path.read_text(), str(path)
        except UnicodeDecodeError:
            raise RecipeError(f"recipe file {path}: not a text file (a recipe is UTF-8 TOML)") from None
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
    """Load a packaged recipe by name or a TOML file, apply ``KEY=VALUE`` overrides, validate (types and
    ranges: :mod:`.validate`)."""
    doc, origin = recipe_document(name_or_path)
    for text in overrides or []:
        _set_path(doc, *parse_override(text))
    try:
        recipe = validate_recipe(recipe_from_dict(doc))
    except RecipeError as e:
        raise RecipeError(f"{origin}: {e}") from None
    if not recipe.name:
        recipe.name = Path(name_or_path).stem
    return recipe


def recipe_from_dict(doc: dict[str, Any], stored: bool = False) -> Recipe:
    """Validate a recipe table. ``stored``: it was written by an older spikeforge into a run directory,
    so each method first brings its section up to date (:meth:`Method.upgrade_stored`)."""
    methods = {m.section: m for m in registered_methods()}
    known = [*SCALAR_FIELDS, *CORE_SECTIONS, *methods]
    for key in doc:
        if key not in known:
            raise RecipeError(f"{key}: unknown key; expected one of {sorted(known)}")
    recipe = build_core(doc)
    for section, method in methods.items():
        raw = doc.get(section)
        if raw is None:
            continue
        if stored and isinstance(raw, dict):
            raw = method.upgrade_stored(dict(raw))
        recipe.methods[section] = convert(raw, method.config_type, section)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as one JSON object (``model.json``): every registered method's section, ``None`` if absent."""
    active_methods(recipe)  # refuses sections of unregistered methods
    doc: dict[str, Any] = {"name": recipe.name, "description": recipe.description}
    doc.update({key: dataclasses.asdict(getattr(recipe, key)) for key in CORE_SECTIONS})
    for m in registered_methods():
        cfg = recipe.methods.get(m.section)
        doc[m.section] = dataclasses.asdict(cfg) if cfg is not None else None  # type: ignore[call-overload]
    return doc


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


def dataclass_toml(obj: Any, table: str) -> str:
    """One dataclass as the TOML table ``[table]``, nested dataclasses as sub-tables; ``None`` is omitted."""
    scalars, tables = [], []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None:
            continue
        if dataclasses.is_dataclass(v):
            tables.append(dataclass_toml(v, f"{table}.{f.name}"))
        else:
            scalars.append(f"{f.name} = {_toml_value(v)}")
    return "\n".join([f"[{table}]", *scalars]) + "\n" + "".join("\n" + t for t in tables)


def to_toml(recipe: Recipe) -> str:
    """Serialise a recipe to TOML: scalars, the fixed tables, then the method sections in registration order."""
    sections = [(key, getattr(recipe, key)) for key in CORE_SECTIONS]
    sections += [(m.section, recipe.methods[m.section]) for m in active_methods(recipe)]
    scalars = [f"{key} = {_toml_value(getattr(recipe, key))}" for key in SCALAR_FIELDS]
    return "\n".join(scalars) + "\n" + "".join("\n" + dataclass_toml(cfg, key) for key, cfg in sections)
