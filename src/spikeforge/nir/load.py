"""``spikeforge.nir.load``: a NIR graph (file or object) as a spikeforge model.

    model = spikeforge.nir.load("model.nir", profile="snntorch")   # or dt=..., reset=...
    y = model(x)          # x [T, B, *input_shape] -> y [T, B, *output_shape], from rest every call

Reading a file needs the optional ``nir`` package (``pip install 'spikeforge[nir]'``); a file that is
not a NIR graph, an unsupported node or a shape mismatch raises one ``ValueError`` naming the file
and the node.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..neurons.surrogate import Surrogate
from .build import build_model, read_spec
from .semantics import Semantics, resolve
from .spec import GraphSpec

INSTALL_HINT = "pip install 'spikeforge[nir]'"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def import_nir() -> ModuleType:
    try:
        return importlib.import_module("nir")
    except ImportError as e:
        raise ImportError(f"NIR import needs the `nir` package: {INSTALL_HINT}") from e


def read_graph(path: str | Path) -> Any:
    """``nir.read`` with one clear error for a missing file, a non-HDF5 file or a malformed graph."""
    nir = import_nir()
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: file not found")
    with open(p, "rb") as f:
        head = f.read(len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE:
        raise ValueError(f"{p}: not a NIR file (NIR graphs are HDF5 files; this one does not start with the HDF5 "
                         "signature)")
    try:
        return nir.read(p, type_check=False)
    except Exception as e:  # noqa: BLE001 - h5py/nir raise many types; one line for the user
        raise ValueError(f"{p}: not a readable NIR graph ({type(e).__name__}: {e})") from None


def semantics_for(graph: Any, semantics: Semantics | None = None, profile: str | None = None,
                  **overrides: Any) -> Semantics:
    """``semantics`` as given, else the profile (or the graph's producer) with ``overrides``."""
    if semantics is not None:
        return semantics
    return resolve(dict(getattr(graph, "metadata", None) or {}), profile, **overrides)


def spec_and_tensors(path_or_graph: str | Path | Any, semantics: Semantics | None = None,
                     profile: str | None = None, **overrides: Any) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    """Read a NIR file or graph into a :class:`GraphSpec` and its tensors (errors name the file)."""
    is_path = isinstance(path_or_graph, str | Path)
    graph = read_graph(path_or_graph) if is_path else path_or_graph
    try:
        sem = semantics_for(graph, semantics, profile, **overrides)
        return read_spec(graph, sem)
    except ValueError as e:
        raise ValueError(f"{path_or_graph}: {e}" if is_path else str(e)) from None


def load(path_or_graph: str | Path | Any, *, semantics: Semantics | None = None, profile: str | None = None,
         dt: float | None = None, reset: str | None = None, fire: str | None = None, spikes: str | None = None,
         surrogate: Surrogate | None = None, backend: str = "auto") -> nn.Module:
    """A NIR graph as a model ``[T, B, *input_shape] -> [T, B, *output_shape]`` (eval mode).

    ``profile`` picks how the graph is discretised (:data:`~.semantics.PROFILES`: ``nir``,
    ``spikeforge``, ``snntorch``, ``norse``, ``sinabs``, ``rockpool``; default: ``spikeforge`` for graphs spikeforge
    wrote, else ``nir``); ``dt``, ``reset`` (``value``/``subtract``), ``fire`` (``gt``/``ge``) and
    ``spikes`` (``single``/``multi``) override single choices, or pass a whole :class:`Semantics`.
    """
    spec, tensors = spec_and_tensors(path_or_graph, semantics, profile, dt=dt, reset=reset, fire=fire,
                                     spikes=spikes)
    model = build_model(spec, surrogate, backend)
    model.load_state_dict(tensors, strict=True)
    return model.eval()
