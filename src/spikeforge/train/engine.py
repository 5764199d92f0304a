"""The training engine: recipe → run directory.

Per epoch: shuffle the in-memory training set, augment each batch on the device, encode it to
``[T, B, ...]``, forward, loss on the time-averaged output (CE) or on output firing rates
(MSE, SD-SNN), backward, clip, step; then evaluate on the test set, record per-site firing
rates, let extensions (hybrid, structural development) act, append one JSON record to
``metrics.jsonl`` and write the checkpoint atomically.

Extensions may replace ``splits.train`` in ``prepare`` (e.g. to hold out a calibration split).
Under ``torchrun`` the same function trains data-parallel (:mod:`.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..data import load_dataset
from ..data.augment import BatchAugment
from ..data.base import ArrayDataset, DatasetInfo, DataSplits
from ..data.config import DataConfig
from ..data.encode import prepare_batch
from ..data.loader import iterate_batches
from ..models import build_model
from .checkpoint import (
    atomic_write_text,
    load_state_into,
    load_tensors,
    optimizer_from_files,
    optimizer_to_files,
    read_json,
    save_tensors,
    write_json,
)
from .config import OptimizerConfig, ScheduleConfig
from .distributed import RANK_SEED_STRIDE, check_batch, from_environment, setup
from .metrics import RateRecorder, get_loss, time_average
from .recipe import Recipe, to_toml
from .rundir import MODEL_META, MODEL_WEIGHTS, active_extensions, save_model

OPTIM_WEIGHTS = "optim.safetensors"
OPTIM_META = "optim.json"
METRICS = "metrics.jsonl"
EPOCH_SEED_STRIDE = 100_003  # seed of epoch e's streams: seed * stride + e


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def make_optimizer(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    factories = {
        "sgd": lambda: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                       weight_decay=cfg.weight_decay),
        "adam": lambda: torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas),
                                           weight_decay=cfg.weight_decay),
    }
    if cfg.name not in factories:
        raise ValueError(f"train.optimizer.name must be one of {sorted(factories)}, got {cfg.name!r}")
    return factories[cfg.name]()


def lr_factor(progress: float, epochs: int, cfg: ScheduleConfig) -> float:
    """Learning-rate multiplier at ``progress`` epochs (fractional) into an ``epochs``-long run.

    Linear warm-up from ``warmup_start_factor`` over ``warmup_epochs``, then ``cosine``
    (to ``min_lr`` as a fraction of the base rate handled by the caller), ``step`` or ``constant``.
    """
    if cfg.warmup_epochs > 0 and progress < cfg.warmup_epochs:
        frac = progress / cfg.warmup_epochs
        return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * frac
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** int(progress // max(1, cfg.step_size))
    if cfg.name == "cosine":
        span = max(1e-9, epochs - cfg.warmup_epochs)
        t = min(1.0, (progress - cfg.warmup_epochs) / span)
        return 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"train.schedule.name must be cosine, step or constant, got {cfg.name!r}")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision`` ``"bf16"`` (CPU and CUDA) or ``"auto"`` on CUDA; ``"fp32"``
    (or the deprecated ``train.amp`` value ``"off"``) runs in float32. Neuron membranes stay
    float32 under autocast (``spikeforge.neurons.state_dtype``)."""
    if precision not in ("auto", "bf16", "fp32", "off"):
        raise ValueError(f"train.precision must be auto, bf16 or fp32, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_model(model: nn.Module, ds: ArrayDataset, info: DatasetInfo, data_cfg: DataConfig,
                   batch_size: int, device: torch.device, amp: str = "off", seed: int = 0,
                   loss_name: str = "ce") -> dict[str, Any]:
    """Accuracy, mean loss and per-site firing rates on ``ds``."""
    model.eval()
    loss_fn = get_loss(loss_name)
    gen = torch.Generator(device=device).manual_seed(seed)
    correct, total, loss_sum = 0, 0, 0.0
    with RateRecorder(model) as rec:
        for x, y in iterate_batches(ds, batch_size, shuffle=False, generator=None, device=device):
            inp = prepare_batch(x, info, data_cfg, None, gen, train=False)
            with _autocast(device, amp):
                out = model(inp)
            out = out.float()
            loss_sum += float(loss_fn(out, y, 0.0)) * y.shape[0]
            correct += int((time_average(out).argmax(-1) == y).sum())
            total += y.shape[0]
    return {"accuracy": correct / max(1, total), "loss": loss_sum / max(1, total), "firing_rates": rec.rates(),
            "samples": total}


def fit_recipe_to_data(recipe: Recipe, info: DatasetInfo) -> None:
    """The dataset decides the input geometry and the normalisation; the resolved recipe records both."""
    recipe.model.num_classes, recipe.model.in_channels = info.num_classes, info.in_channels
    recipe.model.input_size = info.input_size
    if info.mean and not recipe.data.mean:
        recipe.data.mean, recipe.data.std = list(info.mean), list(info.std)


def _truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    """Drop records of epochs after the last committed checkpoint (a crash between the two writes)."""
    path = run_dir / METRICS
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= last_epoch]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _save_checkpoint(run_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, recipe: Recipe,
                     hooks: dict[str, list[Any]], epoch: int, best: float) -> None:
    ext_meta: dict[str, Any] = {}
    hook_state: dict[str, list[Any]] = {}
    for section, hs in hooks.items():
        merged: dict[str, Any] = {}
        for h in hs:
            if hasattr(h, "metadata"):
                merged.update(h.metadata())
        ext_meta[section] = merged
        hook_state[section] = [h.state_dict() if hasattr(h, "state_dict") else None for h in hs]
    # optim.json is written last: it is the commit marker --resume trusts (its epoch must match model.json's)
    save_model(run_dir, model, recipe, ext_meta, {"epoch": epoch, "best_accuracy": best})
    tensors, rest = optimizer_to_files(opt)
    save_tensors(run_dir / OPTIM_WEIGHTS, tensors)
    write_json(run_dir / OPTIM_META, {"optimizer": rest, "epoch": epoch, "best_accuracy": best, "hooks": hook_state})


def train(recipe: Recipe, run_dir: str | Path, data_root: str | Path | None = None, device: str = "auto",
          resume: bool = False, quiet: bool = False, splits: DataSplits | None = None) -> dict[str, Any]:
    """Train ``recipe`` into ``run_dir``; returns the last epoch's metrics record."""
    run_dir = Path(run_dir)
    cfg = recipe.train
    ddp = from_environment()
    dev = setup(ddp, resolve_device(device if device != "auto" else cfg.device))
    check_batch(ddp, cfg.batch_size)
    torch.manual_seed(cfg.seed)
    splits = splits or load_dataset(recipe.data, data_root)
    info = splits.info
    fit_recipe_to_data(recipe, info)
    if resume and not (run_dir / OPTIM_META).is_file():
        raise FileNotFoundError(f"--resume: {run_dir / OPTIM_META} not found (nothing to resume)")
    if not resume and (run_dir / METRICS).exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume or choose another --out")
    ddp.barrier()  # every rank has checked the run directory before rank 0 writes into it
    run_dir.mkdir(parents=True, exist_ok=True)

    model = build_model(recipe.model).to(dev)
    hooks: dict[str, list[Any]] = {}
    model_meta = read_json(run_dir / MODEL_META) if resume else {}
    saved_meta = model_meta.get("extensions", {})
    for ext in active_extensions(recipe):
        hooks[ext.section] = list(ext.prepare(recipe, model, splits, dev, saved=saved_meta.get(ext.section)))
    model.to(dev)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optimizer)
    start_epoch, best = 1, 0.0
    if resume:
        state = read_json(run_dir / OPTIM_META)
        model_epoch = model_meta.get("epoch")
        if model_epoch != state["epoch"]:
            raise ValueError(f"{run_dir}: model.json is at epoch {model_epoch} but optim.json at {state['epoch']} "
                             "(interrupted checkpoint); cannot resume exactly")
        load_state_into(model, load_tensors(run_dir / MODEL_WEIGHTS, dev), run_dir / MODEL_WEIGHTS)
        optimizer_from_files(opt, load_tensors(run_dir / OPTIM_WEIGHTS, "cpu"), state["optimizer"])
        for section, states in state.get("hooks", {}).items():
            own = hooks.get(section, [])
            if len(own) != len(states):
                raise ValueError(f"{run_dir / OPTIM_META}: section {section!r} saved {len(states)} hook states, "
                                 f"the recipe now has {len(own)} hooks")
            for h, st in zip(own, states, strict=True):
                if st is not None and hasattr(h, "load_state_dict"):
                    h.load_state_dict(st)
        start_epoch, best = int(state["epoch"]) + 1, float(state["best_accuracy"])
        _truncate_metrics(run_dir, int(state["epoch"]))
    if ddp.is_main:
        atomic_write_text(run_dir / "recipe.toml", to_toml(recipe))
    step_model = ddp.wrap(model, dev)  # the DDP wrapper (or the model itself) for training forwards
    if ddp.enabled:
        torch.manual_seed(cfg.seed + ddp.rank * RANK_SEED_STRIDE)  # dropout masks differ per rank

    loss_fn = get_loss(cfg.loss)
    augment = BatchAugment.from_config(recipe.data)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    all_hooks = [h for hs in hooks.values() for h in hs]
    base_lrs = [cfg.optimizer.lr for _ in opt.param_groups]  # not g["lr"]: a resumed optimizer holds a scheduled lr
    steps_per_epoch = max(1, math.ceil(len(splits.train) / cfg.batch_size))
    record: dict[str, Any] = {}
    for epoch in range(start_epoch, cfg.epochs + 1):
        # one reproducible random stream per epoch, so --resume continues exactly
        shuffle_gen.manual_seed(cfg.seed * EPOCH_SEED_STRIDE + epoch)
        gen.manual_seed(cfg.seed * EPOCH_SEED_STRIDE + epoch + ddp.rank * RANK_SEED_STRIDE)
        model.train()
        t0 = time.perf_counter()
        seen, correct, loss_sum = 0, 0, 0.0
        batches = iterate_batches(splits.train, cfg.batch_size, shuffle=True, generator=shuffle_gen, device=dev,
                                  drop_last=False)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", disable=quiet or not ddp.is_main,
                   leave=False)
        for i, (x, y) in enumerate(bar):
            n_global = y.shape[0]
            if n_global < ddp.world:
                continue  # a final global batch too small to give every rank a sample
            x, y = ddp.chunk(x, y)
            factor = lr_factor(epoch - 1 + i / steps_per_epoch, cfg.epochs, cfg.schedule)
            for g, base in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = cfg.schedule.min_lr + (base - cfg.schedule.min_lr) * factor
            inp = prepare_batch(x, info, recipe.data, augment, gen, train=True)
            with _autocast(dev, cfg.amp):
                out = step_model(inp)
            loss = loss_fn(out.float(), y, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            (loss * ddp.loss_weight(y.shape[0], n_global)).backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            for h in all_hooks:
                if hasattr(h, "after_step"):
                    h.after_step(model)
            n = y.shape[0]
            seen += n
            loss_sum += float(loss.detach()) * n
            correct += int((time_average(out.detach()).argmax(-1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        train_time = time.perf_counter() - t0
        seen_f, correct_f, loss_sum = ddp.sum([float(seen), float(correct), loss_sum], dev)
        seen, correct = int(seen_f), int(correct_f)
        record = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": loss_sum / max(1, seen),
                  "train_accuracy": correct / max(1, seen), "train_time_s": train_time,
                  "train_samples_per_s": seen / max(train_time, 1e-9)}
        for h in all_hooks:  # structural changes happen before evaluation, so accuracy reflects them
            if hasattr(h, "on_epoch_end"):
                record.update(h.on_epoch_end(epoch, cfg.epochs, model) or {})
        if not ddp.is_main:
            ddp.barrier()  # rank 0 evaluates and writes the checkpoint
            continue
        ev = evaluate_model(model, splits.test, info, recipe.data, cfg.eval_batch_size, dev, cfg.amp, cfg.seed,
                            cfg.loss)
        record.update({"test_accuracy": ev["accuracy"], "test_loss": ev["loss"], "firing_rates": ev["firing_rates"],
                       "epoch_time_s": time.perf_counter() - t0})
        best = max(best, ev["accuracy"])
        record["best_test_accuracy"] = best
        _append_metrics(run_dir, record)
        _save_checkpoint(run_dir, model, opt, recipe, hooks, epoch, best)
        if not quiet:
            print(f"epoch {epoch}/{cfg.epochs}  loss {record['train_loss']:.4f}  train acc "
                  f"{record['train_accuracy']:.4f}  test acc {ev['accuracy']:.4f}  "
                  f"({record['train_samples_per_s']:.0f} samples/s, {record['epoch_time_s']:.1f} s)", flush=True)
        ddp.barrier()
    if ddp.is_main:
        from ..plots import plot_run

        plot_run(run_dir)
    return record
