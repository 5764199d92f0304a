"""Checkpoint files: tensors in safetensors, everything else in JSON, each written atomically.

The atomic file helpers live in :mod:`spikeforge.atomic` (data caches use them too) and are
re-exported here. Nothing is unpickled: a checkpoint is safe to open even if it came from
elsewhere, and every tensor loaded into a model or an optimizer is checked to be finite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write_bytes, atomic_write_text, atomic_write_with, read_json, read_toml, write_json

__all__ = ["NonFiniteError", "atomic_write_bytes", "atomic_write_text", "atomic_write_with", "check_finite",
           "load_state_into", "load_tensors", "optimizer_from_files", "optimizer_to_files", "read_json", "read_toml",
           "save_tensors", "write_json"]
SHOWN_NAMES = 3  # tensors named in a non-finite error before "and N more"


class NonFiniteError(ValueError):
    """A tensor or a training step holds NaN or an infinity."""


def check_finite(tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise :class:`NonFiniteError` naming ``source`` and the tensors that hold NaN or infinities."""
    bad = []
    for name, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            n = int((~torch.isfinite(t)).sum())
            if n:
                bad.append(f"{name!r} ({n} of {t.numel()} values)")
    if bad:
        more = f" and {len(bad) - SHOWN_NAMES} more" if len(bad) > SHOWN_NAMES else ""
        which = f"tensor {bad[0]} holds" if len(bad) == 1 else f"tensors {', '.join(bad[:SHOWN_NAMES])}{more} hold"
        raise NonFiniteError(f"{source}: {which} NaN or infinite values; it is not a usable state")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (contiguous CPU copies; shared storage is duplicated) atomically."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    try:
        atomic_write_with(path, lambda tmp: save_file(clean, tmp, metadata=metadata))
    except SafetensorError as e:  # e.g. a full disk, reported by the Rust writer
        raise OSError(f"{path}: could not be written ({e})") from None


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def load_state_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """``load_state_dict`` with an error naming the file and the mismatching keys/shapes or the
    tensors that are not finite."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own.keys() & tensors.keys() if own[k].shape != tensors[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{source}: weights do not match the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatches {shapes[:5]})")
    check_finite(tensors, source)
    module.load_state_dict(tensors)


def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors and a JSON-serialisable rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_json: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        entry: dict[str, Any] = {}
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{idx}.{key}"] = val
            else:
                entry[key] = val
        state_json[str(idx)] = entry
    return tensors, {"state": state_json, "param_groups": sd["param_groups"]}


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in rest["state"].items()}
    for name, t in tensors.items():
        idx, _, key = name.partition(".")
        state.setdefault(int(idx), {})[key] = t
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
