"""Optimizers and the learning-rate schedule of recipe sections ``[train.optimizer]`` / ``[train.schedule]``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .config import OptimizerConfig, ScheduleConfig

COSINE_MIN_SPAN = 1e-9  # epochs: guards a cosine schedule whose warm-up fills the whole run
OPTIMIZERS = ("sgd", "adam", "adamw")  # train.optimizer.name
SCHEDULES = ("cosine", "step", "constant")  # train.schedule.name


def _betas(cfg: OptimizerConfig) -> tuple[float, float]:
    if len(cfg.betas) != 2:
        raise ValueError(f"train.optimizer.betas must hold 2 values, got {cfg.betas}")
    return cfg.betas[0], cfg.betas[1]


def make_optimizer(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    factories: dict[str, Callable[[], torch.optim.Optimizer]] = {
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                       weight_decay=cfg.weight_decay),
        "adam": lambda: torch.optim.Adam(params, lr=cfg.lr, betas=_betas(cfg), weight_decay=cfg.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr, betas=_betas(cfg), weight_decay=cfg.weight_decay),
    }
    if cfg.name not in factories:
        raise ValueError(f"train.optimizer.name must be one of {list(OPTIMIZERS)}, got {cfg.name!r}")
    return factories[cfg.name]()


def lr_factor(progress: float, epochs: int, cfg: ScheduleConfig) -> float:
    """Learning-rate multiplier at ``progress`` epochs (fractional) into an ``epochs``-long run.

    Linear warm-up from ``warmup_start_factor`` over ``warmup_epochs``, then ``cosine``
    (to ``min_lr``, see :func:`scheduled_lr`), ``step`` or ``constant``.
    """
    if cfg.warmup_epochs > 0 and progress < cfg.warmup_epochs:
        frac = progress / cfg.warmup_epochs
        return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * frac
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return float(cfg.gamma ** int(progress // max(1, cfg.step_size)))
    if cfg.name == "cosine":
        span = max(COSINE_MIN_SPAN, epochs - cfg.warmup_epochs)
        t = min(1.0, (progress - cfg.warmup_epochs) / span)
        return 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"train.schedule.name must be cosine, step or constant, got {cfg.name!r}")


def set_scheduled_lr(optimizer: torch.optim.Optimizer, base_lr: float, progress: float, epochs: int,
                     cfg: ScheduleConfig) -> None:
    """Every parameter group's lr at ``progress`` epochs: ``min_lr + (base − min_lr)·factor``.

    ``base_lr`` comes from the recipe, not from the groups: a resumed optimizer holds a scheduled lr.
    """
    factor = lr_factor(progress, epochs, cfg)
    for group in optimizer.param_groups:
        group["lr"] = cfg.min_lr + (base_lr - cfg.min_lr) * factor
