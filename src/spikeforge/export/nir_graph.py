"""Export a trained chain SNN to a NIR graph (Neuromorphic Intermediate Representation).

NIR (https://github.com/neuromorphs/nir; Pedersen et al., Nature Communications 2024) describes a
network as a graph of time-continuous primitives that simulators and neuromorphic hardware import
(Norse, snnTorch, Lava, Sinabs, SpiNNaker2, Xylo, ...). Shapes in NIR exclude batch and time.

A spikeforge model is an ``nn.Sequential`` of named, time-distributed children; the export walks
them in order and emits one NIR node per child (named after it), chained by edges:

    Input [C, H, W] → Conv2d / Affine / AvgPool2d / Flatten / LIF / IF … → Output

- ``Conv2d`` + ``BatchNorm2d`` → one NIR ``Conv2d``, the batch norm folded with its running
  statistics (eval mode): ``k = γ / √(σ² + ε)``, ``W' = k · W``, ``b' = k · (b − μ) + β``;
- ``Linear`` → ``Affine`` (``y = W x + b``; a missing bias is exported as zeros);
- ``AvgPool2d`` → ``AvgPool2d``; ``AdaptiveAvgPool2d`` → ``AvgPool2d`` with kernel = stride = input/output;
- ``Flatten`` → ``Flatten(start_dim=0)`` (NIR shapes have no batch dimension);
- spiking neurons → ``LIF`` / ``IF`` per :mod:`.neuron_map` (``dt`` is a parameter);
- ``Dropout`` / ``Identity`` are skipped (inference).

The last synaptic layer without a neuron after it is the readout: its ``Affine`` feeds ``Output``
every time step, and spikeforge's decoding averages that output over the T steps (a consumer must
do the same). Masked (structurally developed) layers export their effective weights ``W ⊙ M``.

Refused with a ``ValueError`` naming the layer: max pooling (NIR has none), residual blocks,
hybrid SpikingReLU sites, soft-reset neurons, and any other layer type.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .. import __version__
from .. import layers as L
from ..develop.masking import is_masked
from ..models.resnet import BasicBlock
from ..neurons import Site, SpikingNeuron
from ..train.checkpoint import atomic_write_with
from .neuron_map import DEFAULT_DT, nir_neuron

INSTALL_HINT = "pip install 'spikeforge[nir]'"
INPUT_NODE = "input"
OUTPUT_NODE = "output"
NEURON_TYPES = ("LIF", "IF")
SYNAPSE_TYPES = ("Conv2d", "Affine")
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm2d, nn.BatchNorm1d)
SYNAPTIC_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
NUMPY_DTYPES: dict[torch.dtype, type[np.floating]] = {
    torch.float16: np.float16, torch.bfloat16: np.float32, torch.float32: np.float32, torch.float64: np.float64,
}


def import_nir() -> ModuleType:
    """The ``nir`` package, or an ``ImportError`` saying how to install it."""
    try:
        return importlib.import_module("nir")
    except ImportError as e:
        raise ImportError(f"NIR export needs the `nir` package: {INSTALL_HINT}") from e


@dataclass
class Layer:
    """One exported child: a module, plus the batch norm folded into it (if any)."""

    name: str
    module: nn.Module
    norm: nn.Module | None = None
    norm_name: str = ""


@dataclass
class Builder:
    """The graph under construction: nodes, chain edges and the current (batch-free) shape."""

    nir: ModuleType
    dtype: np.dtype
    dt: float
    shape: tuple[int, ...]
    nodes: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    last: str = ""

    def add(self, name: str, node: Any, shape: tuple[int, ...]) -> None:
        if name in self.nodes:
            raise ValueError(f"layer name {name!r} clashes with another NIR node; rename the layer")
        self.nodes[name] = node
        if self.last:
            self.edges.append((self.last, name))
        self.last, self.shape = name, shape

    def array(self, t: torch.Tensor | np.ndarray) -> np.ndarray:
        data = t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        return np.ascontiguousarray(data, dtype=self.dtype)

    def full(self, value: float) -> np.ndarray:
        return np.full(self.shape, value, dtype=self.dtype)


Converter = Callable[[Builder, Layer], None]


# ---------------------------------------------------------------- synapses


def effective_synapse(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 ``(W, b)`` as the forward pass uses them (masks applied; a missing bias is 0)."""
    w, b = (m.effective_weight(), m.effective_bias()) if is_masked(m) else (m.weight, m.bias)
    w = w.detach().double().cpu()
    return w, (torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b.detach().double().cpu())


def fold_norm(w: torch.Tensor, b: torch.Tensor, layer: Layer) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold the layer's batch norm (running statistics) into ``(W, b)``."""
    bn = layer.norm
    if bn is None:
        return w, b
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"batch norm {layer.norm_name!r} keeps no running statistics; it cannot be folded")
    if bn.num_features != w.shape[0]:
        raise ValueError(f"batch norm {layer.norm_name!r} has {bn.num_features} features but {layer.name!r} "
                         f"has {w.shape[0]} outputs")
    mean, var = bn.running_mean.detach().double().cpu(), bn.running_var.detach().double().cpu()
    gamma = bn.weight.detach().double().cpu() if bn.affine else torch.ones_like(mean)
    beta = bn.bias.detach().double().cpu() if bn.affine else torch.zeros_like(mean)
    gate = getattr(bn, "channel_mask", None)  # a developed run's channel gate (1 alive, 0 pruned)
    if gate is not None:
        gamma, beta = gamma * gate.double().cpu(), beta * gate.double().cpu()
    k = gamma / torch.sqrt(var + bn.eps)
    return w * k.view(-1, *([1] * (w.dim() - 1))), (b - mean) * k + beta


def convert_conv2d(bld: Builder, layer: Layer) -> None:
    m = layer.module
    if len(bld.shape) != 3 or bld.shape[0] != m.in_channels:
        raise ValueError(f"conv {layer.name!r} expects {m.in_channels} input channels, gets shape {bld.shape}")
    if m.padding_mode != "zeros":
        raise ValueError(f"conv {layer.name!r} pads with {m.padding_mode!r}; NIR's Conv2d pads with zeros")
    w, b = fold_norm(*effective_synapse(m), layer)
    padding = m.padding if isinstance(m.padding, str) else _pair(m.padding)
    node = bld.nir.Conv2d(input_shape=bld.shape[1:], weight=bld.array(w), stride=_pair(m.stride),
                          padding=padding, dilation=_pair(m.dilation), groups=m.groups, bias=bld.array(b))
    bld.add(layer.name, node, tuple(int(n) for n in node.output_type["output"]))


def convert_linear(bld: Builder, layer: Layer) -> None:
    m = layer.module
    if bld.shape != (m.in_features,):
        raise ValueError(f"linear layer {layer.name!r} expects a flat input of {m.in_features}, "
                         f"gets shape {bld.shape} (add a Flatten before it)")
    w, b = fold_norm(*effective_synapse(m), layer)
    bld.add(layer.name, bld.nir.Affine(weight=bld.array(w), bias=bld.array(b)), (m.out_features,))


# ---------------------------------------------------------------- shape-only layers


def pooled_side(side: int, kernel: int, stride: int, padding: int) -> int:
    """``⌊(side + 2·padding − kernel) / stride⌋ + 1`` (floor mode)."""
    return (side + 2 * padding - kernel) // stride + 1


def add_avgpool(bld: Builder, name: str, kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]) -> None:
    if len(bld.shape) != 3:
        raise ValueError(f"pool {name!r} expects a [C, H, W] input, gets shape {bld.shape}")
    c, h, w = bld.shape
    node = bld.nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
    out = (c, pooled_side(h, kernel[0], stride[0], padding[0]), pooled_side(w, kernel[1], stride[1], padding[1]))
    bld.add(name, node, out)


def convert_avgpool(bld: Builder, layer: Layer) -> None:
    m = layer.module
    if m.ceil_mode or m.divisor_override is not None:
        raise ValueError(f"average pool {layer.name!r} uses ceil_mode / divisor_override; NIR's AvgPool2d has neither")
    padding = _pair(m.padding)
    if any(padding):
        raise ValueError(f"average pool {layer.name!r} is padded; NIR does not define how padding is averaged")
    add_avgpool(bld, layer.name, _pair(m.kernel_size), _pair(m.stride or m.kernel_size), padding)


def convert_adaptive_avgpool(bld: Builder, layer: Layer) -> None:
    if len(bld.shape) != 3:
        raise ValueError(f"pool {layer.name!r} expects a [C, H, W] input, gets shape {bld.shape}")
    sides = bld.shape[1:]
    out = tuple(s if o is None else o for s, o in zip(sides, _pair(layer.module.output_size), strict=True))
    if any(s % o for s, o in zip(sides, out, strict=True)):
        raise ValueError(f"adaptive pool {layer.name!r}: output {out} does not divide input {sides}; "
                         "no fixed-kernel AvgPool2d matches it")
    kernel = (sides[0] // out[0], sides[1] // out[1])
    add_avgpool(bld, layer.name, kernel, kernel, (0, 0))


def convert_flatten(bld: Builder, layer: Layer) -> None:
    node = bld.nir.Flatten(input_type={"input": np.array(bld.shape)}, start_dim=0, end_dim=-1)
    bld.add(layer.name, node, (int(np.prod(bld.shape)),))


def skip(bld: Builder, layer: Layer) -> None:
    """Inference no-ops (dropout, identity)."""


# ---------------------------------------------------------------- sites


def convert_neuron(bld: Builder, layer: Layer) -> None:
    n = nir_neuron(layer.name, layer.module.params(), bld.dt)
    meta = {"v_init": n.v_init, "threshold_comparison": "spikeforge: h >= threshold"}
    if n.kind == "IF":
        node = bld.nir.IF(r=bld.full(n.r), v_threshold=bld.full(n.v_threshold), v_reset=bld.full(n.v_reset),
                          metadata=meta)
    else:
        node = bld.nir.LIF(tau=bld.full(n.tau), r=bld.full(n.r), v_leak=bld.full(n.v_leak),
                           v_threshold=bld.full(n.v_threshold), v_reset=bld.full(n.v_reset), metadata=meta)
    bld.add(layer.name, node, bld.shape)


def refuse_maxpool(bld: Builder, layer: Layer) -> None:
    raise ValueError(f"max pool {layer.name!r}: NIR has no max-pooling primitive; "
                     "train with average pooling (recipe: [model] pool = \"avg\") to export")


def refuse_hybrid(bld: Builder, layer: Layer) -> None:
    raise ValueError(f"site {layer.name!r} is a {type(layer.module).__name__} (hybrid quantized ReLU), not a "
                     "spiking neuron; NIR export needs a pure SNN. `spikeforge convert` reparameterizes a hybrid "
                     "run into an all-spiking graph (spikeforge's own format, not exportable to NIR yet); "
                     "or train the recipe without its [hybrid] section")


CONVERTERS: dict[type[nn.Module], Converter] = {
    nn.Conv2d: convert_conv2d,
    nn.Linear: convert_linear,
    nn.AvgPool2d: convert_avgpool,
    nn.AdaptiveAvgPool2d: convert_adaptive_avgpool,
    nn.MaxPool2d: refuse_maxpool,
    nn.AdaptiveMaxPool2d: refuse_maxpool,
    L.Flatten: convert_flatten,
    L.Dropout: skip,
    nn.Dropout: skip,
    nn.Identity: skip,
    SpikingNeuron: convert_neuron,
    Site: refuse_hybrid,  # any other site (SpikingReLU) is not a spiking neuron
}


def converter_for(layer: Layer) -> Converter:
    """The converter of the nearest class in the module's MRO (masked layers are conv/linear)."""
    for cls in type(layer.module).__mro__:
        if cls in CONVERTERS:
            return CONVERTERS[cls]
    raise ValueError(f"layer {layer.name!r} ({type(layer.module).__name__}) has no NIR export; "
                     f"supported: {sorted(c.__name__ for c in CONVERTERS)}")


# ---------------------------------------------------------------- graph


def chain_layers(model: nn.Module) -> list[Layer]:
    """The model's children in order, each batch norm attached to the synaptic layer before it."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"NIR export supports chain models (nn.Sequential); got {type(model).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, BasicBlock):
            raise ValueError(f"residual block {name!r}: NIR export supports chain models only "
                             "(sdsnn_convnet, cifar_convnet, vgg11/vgg16), not residual networks")
    out: list[Layer] = []
    for name, m in model.named_children():
        if isinstance(m, NORM_TYPES):
            prev = out[-1] if out else None
            if prev is None or prev.norm is not None or not isinstance(prev.module, SYNAPTIC_TYPES):
                raise ValueError(f"batch norm {name!r} does not directly follow a conv/linear layer; "
                                 "it cannot be folded")
            prev.norm, prev.norm_name = m, name
            continue
        out.append(Layer(name, m))
    return out


def model_dtype(model: nn.Module) -> np.dtype:
    """NumPy dtype of the model's floating parameters (float32 if it has none)."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.dtype in NUMPY_DTYPES:
            return np.dtype(NUMPY_DTYPES[t.dtype])
    return np.dtype(np.float32)


def graph_metadata(dt: float, readout: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "producer": "spikeforge", "spikeforge_version": __version__, "dt": float(dt), "readout_node": readout,
        "readout_decoding": "mean of the readout over the T time steps",
        "threshold_comparison": "spikeforge fires at h >= threshold; NIR specifies v > threshold",
    }
    meta.update(extra or {})
    return meta


@torch.no_grad()
def model_to_nir(model: nn.Module, input_shape: tuple[int, ...], dt: float = DEFAULT_DT,
                 metadata: dict[str, Any] | None = None) -> Any:
    """A ``nir.NIRGraph`` of ``model`` (a chain SNN) fed ``input_shape = (C, H, W)`` each time step.

    Weights keep the model's floating dtype; neuron parameters are per-neuron arrays. ``dt`` is the
    forward-Euler step the consumer uses (see :mod:`.neuron_map`). The model is not modified.
    """
    nir = import_nir()
    shape = tuple(int(s) for s in input_shape)
    bld = Builder(nir, model_dtype(model), float(dt), shape)
    bld.add(INPUT_NODE, nir.Input(input_type={"input": np.array(shape)}), shape)
    for layer in chain_layers(model):
        converter_for(layer)(bld, layer)
    readout = bld.last
    if readout == INPUT_NODE:
        raise ValueError("the model has no layer to export")
    bld.add(OUTPUT_NODE, nir.Output(output_type={"output": np.array(bld.shape)}), bld.shape)
    return nir.NIRGraph(nodes=bld.nodes, edges=bld.edges, metadata=graph_metadata(dt, readout, metadata),
                        type_check=True)


def write_nir(graph: Any, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    nir = import_nir()
    path = Path(path)
    atomic_write_with(path, lambda tmp: nir.write(tmp, graph))
    return path


def graph_summary(graph: Any) -> dict[str, Any]:
    """Node counts by type, neurons per site, synaptic weight counts and the readout."""
    types = Counter(type(n).__name__ for n in graph.nodes.values())
    neurons = {k: int(n.v_threshold.size) for k, n in graph.nodes.items() if type(n).__name__ in NEURON_TYPES}
    synapses = [n.weight for n in graph.nodes.values() if type(n).__name__ in SYNAPSE_TYPES]
    return {
        "nodes": len(graph.nodes), "edges": len(graph.edges), "node_types": dict(sorted(types.items())),
        "neuron_sites": neurons, "neurons": sum(neurons.values()),
        "weights": int(sum(w.size for w in synapses)),
        "nonzero_weights": int(sum(np.count_nonzero(w) for w in synapses)),
        "readout": graph.metadata.get("readout_node"), "dt": graph.metadata.get("dt"),
    }


def export_run(run_dir: str | Path, out_path: str | Path, dt: float = DEFAULT_DT) -> dict[str, Any]:
    """Load a run directory, export its model to the NIR file ``out_path``; returns a summary."""
    from ..train.rundir import load_run

    import_nir()  # fail before loading anything when nir is missing
    run = load_run(run_dir, "cpu")
    cfg = run.recipe.model
    input_shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
    extra = {"source_run": str(Path(run_dir).resolve()), "recipe": run.recipe.name, "model": cfg.name,
             "time_steps": int(run.recipe.data.time_steps), "data_encoding": run.recipe.data.encoding}
    graph = model_to_nir(run.model, input_shape, dt, extra)
    path = write_nir(graph, out_path)
    summary = graph_summary(graph)
    summary.update(run_dir=str(run_dir), out=str(path), bytes=path.stat().st_size, input_shape=list(input_shape),
                   time_steps=extra["time_steps"], model=cfg.name)
    return summary
