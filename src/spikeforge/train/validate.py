"""Checks of a resolved recipe's values, before any data is loaded or any epoch runs.

The schema (:mod:`.schema`) checks types and refuses NaN and infinities; this module checks
ranges and names: one table of rules for the fixed sections (:data:`RULES`), the neuron's time
constant, the device, a dry build of the model on PyTorch's ``meta`` device (no memory, no data:
it catches structural errors such as an unknown residual style), and each method's own
:meth:`~spikeforge.train.hooks.Method.validate`. Every error is one :class:`RecipeError` line that
names the key and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..models import MODELS, build_model
from ..neurons.surrogate import SURROGATES
from .metrics import LOSSES
from .optim import OPTIMIZERS, SCHEDULES
from .registry import active_methods
from .schema import Recipe, RecipeError

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
THREAD_CHOICES = ("default", "auto")
NEURON_KINDS = ("if", "lif", "plif")
PLIF_MIN_TAU = 1.0  # PLIF learns tau = 1 + exp(-w): its initial tau must exceed 1
ENCODINGS = ("direct", "rate", "frames")


@dataclass(frozen=True)
class Rule:
    """``key`` (dotted path in the recipe) must satisfy ``ok``; ``expected`` says what that means."""

    key: str
    ok: Callable[[Any], bool]
    expected: str


def at_least(n: float) -> Callable[[Any], bool]:
    return lambda v: v >= n


def positive(v: Any) -> bool:
    return bool(v > 0)


def unit_interval(v: Any) -> bool:
    """In ``[0, 1)``."""
    return bool(0 <= v < 1)


def one_of(choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices


RULES: tuple[Rule, ...] = (
    Rule("train.epochs", at_least(1), "an integer >= 1"),
    Rule("train.batch_size", at_least(1), "an integer >= 1"),
    Rule("train.eval_batch_size", at_least(1), "an integer >= 1"),
    Rule("train.keep_checkpoints", at_least(1), "an integer >= 1"),
    Rule("train.skip_nonfinite_steps", at_least(0), "an integer >= 0"),
    Rule("train.label_smoothing", unit_interval, "a number in [0, 1)"),
    Rule("train.grad_clip", at_least(0), "a number >= 0 (0 = off)"),
    Rule("train.loss", one_of(LOSSES), f"one of {sorted(LOSSES)}"),
    Rule("train.optimizer.name", one_of(OPTIMIZERS), f"one of {list(OPTIMIZERS)}"),
    Rule("train.optimizer.lr", positive, "a finite number > 0"),
    Rule("train.optimizer.momentum", unit_interval, "a number in [0, 1)"),
    Rule("train.optimizer.weight_decay", at_least(0), "a number >= 0"),
    Rule("train.optimizer.betas", lambda b: len(b) == 2 and all(0 <= x < 1 for x in b), "two numbers in [0, 1)"),
    Rule("train.schedule.name", one_of(SCHEDULES), f"one of {list(SCHEDULES)}"),
    Rule("train.schedule.min_lr", at_least(0), "a number >= 0"),
    Rule("train.schedule.warmup_epochs", at_least(0), "an integer >= 0"),
    Rule("train.schedule.warmup_start_factor", at_least(0), "a number >= 0"),
    Rule("train.schedule.step_size", at_least(1), "an integer >= 1"),
    Rule("train.schedule.gamma", positive, "a number > 0"),
    Rule("train.device", lambda d: DEVICE_PATTERN.fullmatch(d) is not None, DEVICE_CHOICES),
    Rule("train.threads", lambda n: n in THREAD_CHOICES if isinstance(n, str) else n >= 1,
         f"an integer >= 1 or one of {list(THREAD_CHOICES)}"),
    Rule("model.name", one_of(MODELS), f"one of {sorted(MODELS)}"),
    Rule("model.width", positive, "a number > 0 (the channel multiplier; every layer keeps at least 1 channel)"),
    Rule("model.num_classes", at_least(1), "an integer >= 1"),
    Rule("model.in_channels", at_least(1), "an integer >= 1"),
    Rule("model.input_size", at_least(1), "an integer >= 1"),
    Rule("model.neuron.kind", one_of(NEURON_KINDS), f"one of {list(NEURON_KINDS)}"),
    Rule("model.neuron.threshold", positive, "a number > 0"),
    Rule("model.neuron.beta", lambda b: 0 <= b <= 1, "a number in (0, 1], or 0 to use tau"),
    Rule("model.neuron.surrogate", one_of(SURROGATES), f"one of {sorted(SURROGATES)}"),
    Rule("data.time_steps", at_least(1), "an integer >= 1"),
    Rule("data.encoding", one_of(ENCODINGS), f"one of {list(ENCODINGS)}"),
    Rule("data.train_limit", at_least(0), "an integer >= 0 (0 = all)"),
    Rule("data.test_limit", at_least(0), "an integer >= 0 (0 = all)"),
    Rule("data.crop_padding", at_least(0), "an integer >= 0"),
    Rule("data.cutout", at_least(0), "an integer >= 0"),
    Rule("data.image_size", at_least(0), "an integer >= 0 (0 = native size)"),
    Rule("data.std", lambda s: all(x > 0 for x in s), "numbers > 0"),
)


def _value(obj: Any, key: str) -> Any:
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def check_rules(obj: Any, rules: tuple[Rule, ...], prefix: str = "") -> None:
    """Raise :class:`RecipeError` for the first rule ``obj`` breaks (a method section: ``prefix`` = its name)."""
    for rule in rules:
        value = _value(obj, rule.key)
        if not rule.ok(value):
            key = f"{prefix}.{rule.key}" if prefix else rule.key
            raise RecipeError(f"{key}: expected {rule.expected}, got {value!r}")


def _tau(recipe: Recipe) -> None:
    n = recipe.model.neuron
    if n.kind == "plif" and not n.tau > PLIF_MIN_TAU:
        raise RecipeError(f"model.neuron.tau: expected a number > {PLIF_MIN_TAU:g} for a PLIF neuron, got {n.tau!r}")
    if n.kind == "lif" and n.beta == 0 and not n.tau > 0:
        raise RecipeError(f"model.neuron.tau: expected a number > 0 (or model.neuron.beta in (0, 1]), got {n.tau!r}")


def check_device(name: str, key: str = "train.device") -> None:
    """A device name spikeforge runs on (availability is checked when training starts)."""
    if DEVICE_PATTERN.fullmatch(name) is None:
        raise RecipeError(f"{key}: unknown device {name!r}; expected {DEVICE_CHOICES}")


def _dry_build(recipe: Recipe) -> None:
    try:
        with torch.device("meta"):
            build_model(recipe.model)
    except (ValueError, TypeError, KeyError, NotImplementedError) as e:
        raise RecipeError(f"model: {e}") from None


def validate_recipe(recipe: Recipe) -> Recipe:
    """Raise :class:`RecipeError` for the first value out of range (see the module docstring); returns ``recipe``."""
    check_rules(recipe, RULES)
    _tau(recipe)
    _dry_build(recipe)
    for method in active_methods(recipe):
        method.validate(method.config(recipe))
    return recipe
