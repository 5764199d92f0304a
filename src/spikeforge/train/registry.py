"""Which training methods the engine knows: methods register themselves here.

``register_method(METHOD)`` adds a :class:`~spikeforge.train.hooks.Method`; from then on recipes may
carry its section, the engine prepares its hook and ``load_run`` restores its structure. Methods act
in registration order (hybrid sites are replaced before structural development attaches its masks).

The methods shipped with spikeforge are registered by :data:`BUILTIN_METHODS` (one line each), which is
imported on the first question asked of this registry, so ``import spikeforge.train`` loads no
method package. A method of your own is registered by calling :func:`register_method` before the
recipe that uses it is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

from .hooks import Method
from .schema import CORE_SECTIONS, SCALAR_FIELDS, Recipe

BUILTIN_METHODS = "spikeforge.methods"  # the module that registers the methods shipped with spikeforge

_methods: dict[str, Method[Any]] = {}
_builtin_loaded = False


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True  # set first: the module's registrations call back into this registry
    try:
        importlib.import_module(BUILTIN_METHODS)
    except BaseException:
        _builtin_loaded = False  # a failed import is reported again on the next question, not hidden
        raise


def register_method(method: Method[Any]) -> None:
    """Add ``method`` after those already registered (the built-in ones first); its section name must be new
    and must not clash with a fixed recipe field."""
    _load_builtin()
    if method.section in (*CORE_SECTIONS, *SCALAR_FIELDS, "methods"):
        raise ValueError(f"method section {method.section!r} clashes with a fixed recipe field")
    if method.section in _methods and _methods[method.section] is not method:
        raise ValueError(f"a method for section [{method.section}] is already registered")
    _methods[method.section] = method


def unregister_method(section: str) -> None:
    """Remove the method of ``section`` (for plug-ins that unload, and tests)."""
    _methods.pop(section, None)


def registered_methods() -> list[Method[Any]]:
    """Every registered method, in registration (= application) order."""
    _load_builtin()
    return list(_methods.values())


def method_for(section: str) -> Method[Any] | None:
    _load_builtin()
    return _methods.get(section)


def active_methods(recipe: Recipe) -> list[Method[Any]]:
    """The registered methods whose section ``recipe`` has, in registration order."""
    unknown = sorted(set(recipe.methods) - {m.section for m in registered_methods()})
    if unknown:
        raise ValueError(f"recipe {recipe.name!r}: sections {unknown} belong to no registered method "
                         f"(registered: {[m.section for m in registered_methods()]})")
    return [m for m in registered_methods() if m.section in recipe.methods]
