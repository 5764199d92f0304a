"""Write small NIR graphs with other libraries' own NIR exporters, plus those libraries' outputs.

For each case the library builds a small network, runs it on a fixed input (its own simulator,
float32, from rest) and exports it with its own ``to_nir``/``export_to_nir``. The script writes

    tests/data/nir/<case>.nir    the library's graph (HDF5, nir.write)
    tests/data/nir/<case>.npz    x [T, B, ...] (input), y [T, B, ...] (the library's output),
                                 profile (spikeforge's producer profile for the library), library version

and ``tests/test_nir_peers.py`` checks that ``spikeforge.nir.load(<case>.nir, profile=...)`` computes
``y`` from ``x``. Needs the peers next to the CPU torch wheel:

    pip install --no-deps snntorch norse sinabs nirtorch pbr rockpool scipy
    python bench/nir_peer_graphs.py [--out tests/data/nir] [--only snntorch_ff ...]

Workarounds the exporters need with nir 1.0.8 (each is what a user of that library has to do too):
snnTorch's parameters must be per-neuron vectors (0-d ``beta`` fails nir's type inference in
``export_to_nir``); Norse writes 0-d arrays, which ``nir.write`` can only store uncompressed
(``compression=None``); Sinabs leaves ``Conv2d.input_shape`` unset, so ``infer_types()`` runs before
``nir.write``. Rockpool writes the bias of its neurons as ``v_leak = 0`` (the bias is lost) and drops
``LIFTorch``'s recurrent weights, so its cases use neither; it writes ``LI.tau`` as the trainable
tensor itself, which ``nir.write`` cannot store until it is detached, and declares the ``Input``/``Output``
shapes with its sample's batch dimensions (``[1, C]``, ``[1, 1, C]``), which ``nir.read`` refuses
("type mismatch"): they are re-declared per sample (``[C]``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

SEED = 20_251_129
Case = Callable[[], tuple[Any, torch.Tensor, torch.Tensor, str, str]]  # graph, x, y, profile, library


def stepwise(step: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.stack([step(x[t]) for t in range(x.shape[0])])


# ---------------------------------------------------------------- snnTorch (zero reset, no reset delay)


def snn_leaky(shape: int | tuple[int, ...], beta: Any, threshold: Any) -> Any:
    """``snn.Leaky`` with parameters shaped like its layer (zero reset, no reset delay: NIR's LIF)."""
    import snntorch as snn

    size = (shape,) if isinstance(shape, int) else shape
    return snn.Leaky(beta=torch.as_tensor(beta).expand(size).clone(),
                     threshold=torch.as_tensor(threshold).expand(size).clone(),
                     init_hidden=True, reset_mechanism="zero", reset_delay=False)


def snntorch_run(net: torch.nn.Module, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    with torch.no_grad():
        utils.reset(net)
        y = stepwise(net, x)
        utils.reset(net)
        graph = export_to_nir(net, x[0], ignore_dims=[0])
    return graph, y


def snntorch_ff() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), snn_leaky(16, 0.9, 1.0),
                              torch.nn.Linear(16, 6), snn_leaky(6, 0.8, 0.7))
    x = torch.rand(25, 4, 12) * 3
    graph, y = snntorch_run(net, x)
    return graph, x, y, "snntorch", "snntorch"


def snntorch_per_neuron() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    """Per-neuron β and thresholds (e.g. learned): the import keeps them as per-neuron buffers."""
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), snn_leaky(20, torch.rand(20) * 0.5 + 0.45, torch.rand(20) + 0.5),
                              torch.nn.Linear(20, 4), snn_leaky(4, torch.tensor([0.6, 0.7, 0.8, 0.95]), 0.8))
    x = torch.rand(30, 3, 10) * 2.5
    graph, y = snntorch_run(net, x)
    return graph, x, y, "snntorch", "snntorch"


def snntorch_conv() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), snn_leaky((4, 8, 8), 0.85, 0.5),
                              torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5),
                              snn_leaky(5, 0.9, 0.6))
    x = (torch.rand(20, 3, 2, 8, 8) < 0.3).float()
    graph, y = snntorch_run(net, x)
    return graph, x, y, "snntorch", "snntorch"


def snntorch_synaptic() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    import snntorch as snn

    syn = snn.Synaptic(alpha=torch.full((8,), 0.7), beta=torch.full((8,), 0.85), threshold=torch.full((8,), 1.0),
                       init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), syn)
    x = torch.rand(30, 4, 6) * 2
    graph, y = snntorch_run(net, x)
    return graph, x, y, "snntorch", "snntorch"


def snntorch_recurrent() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    import snntorch as snn

    rl = snn.RLeaky(beta=torch.full((10,), 0.9), threshold=torch.full((10,), 1.0), linear_features=10,
                    all_to_all=True, init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Linear(6, 10), rl, torch.nn.Linear(10, 3), snn_leaky(3, 0.8, 0.5))
    x = torch.rand(30, 4, 6) * 2
    graph, y = snntorch_run(net, x)
    return graph, x, y, "snntorch", "snntorch"


# ---------------------------------------------------------------- Norse


def norse_run(cells: list[torch.nn.Module], x: torch.Tensor) -> tuple[Any, torch.Tensor]:
    import norse.torch as norse

    net = norse.SequentialState(*cells)
    state = None
    out = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = net(x[t], state)
            out.append(y)
        graph = norse.to_nir(net, x[0])
    return graph, torch.stack(out)


def norse_box() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    import norse.torch as norse

    cells = [torch.nn.Linear(12, 16), norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0),
                                                                                v_th=torch.tensor(0.3))),
             torch.nn.Linear(16, 5), norse.LIBoxCell()]
    x = torch.rand(30, 4, 12) * 3
    graph, y = norse_run(cells, x)
    return graph, x, y, "norse", "norse"


def norse_lifcell() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    import norse.torch as norse

    cells = [torch.nn.Linear(12, 16), norse.LIFCell(norse.LIFParameters(v_th=torch.tensor(0.3))),
             torch.nn.Linear(16, 5), norse.LIFCell(norse.LIFParameters(v_th=torch.tensor(0.2)))]
    x = torch.rand(40, 4, 12) * 6
    graph, y = norse_run(cells, x)
    return graph, x, y, "norse", "norse"


def norse_iaf() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    import norse.torch as norse

    cells = [torch.nn.Linear(12, 16), norse.IAFCell(), torch.nn.Linear(16, 5), norse.IAFCell()]
    x = torch.rand(30, 4, 12) * 2
    graph, y = norse_run(cells, x)
    return graph, x, y, "norse", "norse"


# ---------------------------------------------------------------- Sinabs (IAF: MultiSpike, subtractive reset)


def sinabs_cnn() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    import sinabs.layers as sl
    from sinabs.nir import to_nir

    t, b = 20, 3
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), sl.IAFSqueeze(batch_size=b), sl.SumPool2d(2),
                              torch.nn.Conv2d(4, 6, 3, bias=False), sl.IAFSqueeze(batch_size=b), torch.nn.Flatten(),
                              torch.nn.Linear(6 * 2 * 2, 5), sl.IAFSqueeze(batch_size=b, spike_threshold=2.0))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                m.weight.mul_(2.5)
    x = (torch.rand(t, b, 2, 8, 8) < 0.4).float() * torch.randint(1, 3, (t, b, 2, 8, 8))
    with torch.no_grad():
        y = net(x.transpose(0, 1).reshape(b * t, 2, 8, 8)).reshape(b, t, 5).transpose(0, 1)
        for m in net.modules():
            if isinstance(m, sl.StatefulLayer):
                m.reset_states()
        graph = to_nir(net, x[0])
    graph.infer_types()
    return graph, x, y, "sinabs", "sinabs"


# ---------------------------------------------------------------- Rockpool (exact decays, multi-spikes, dt in R)


def rockpool_run(net: Any, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """Rockpool evolves ``[B, T, C]`` from rest; ``to_nir`` writes the graph (R = τ·e^{−dt/τ}/dt)."""
    import nir
    from rockpool.nn.modules import to_nir

    with torch.no_grad():
        y, _, _ = net(x.transpose(0, 1))
        net.reset_state()
        graph = to_nir(net, torch.zeros(1, x.shape[-1]))
    for node in graph.nodes.values():  # LI's tau is written as the trainable Parameter itself
        for key, value in vars(node).items():
            if isinstance(value, torch.Tensor):
                setattr(node, key, value.detach().numpy())
    # Input/Output are declared with the sample's batch ([1, C] in, [1, 1, C] out), which nir.read refuses
    graph.nodes["input"] = nir.Input(input_type=np.array([x.shape[-1]]))
    graph.nodes["output"] = nir.Output(output_type=np.array([y.shape[-1]]))
    return graph, y.transpose(0, 1)


def rockpool_lif() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    """``LIFTorch`` (→ ``CubaLIF``) layers, per-neuron τ and θ, strong enough input for multi-spikes."""
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch

    net = Sequential(LinearTorch((12, 16)),
                     LIFTorch(16, tau_mem=torch.rand(16) * 0.03 + 0.01, tau_syn=torch.rand(16) * 0.01 + 0.002,
                              threshold=torch.rand(16) * 0.5 + 0.5),
                     LinearTorch((16, 5)), LIFTorch(5, tau_mem=0.02, tau_syn=0.005, threshold=0.7))
    x = (torch.rand(40, 4, 12) < 0.2).float() * 0.25
    graph, y = rockpool_run(net, x)
    return graph, x, y, "rockpool", "rockpool"


def rockpool_neuron_synapse() -> tuple[Any, torch.Tensor, torch.Tensor, str, str]:
    """``LIFNeuronTorch`` (→ ``LIF``) and an ``ExpSynTorch`` readout (→ ``LI``, analog) at dt = 0.5 ms."""
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import ExpSynTorch, LIFNeuronTorch, LinearTorch

    dt = 5e-4
    net = Sequential(LinearTorch((10, 12)), LIFNeuronTorch(12, tau_mem=torch.rand(12) * 0.02 + 0.005,
                                                           threshold=0.6, dt=dt),
                     LinearTorch((12, 4)), ExpSynTorch(4, tau=torch.tensor([0.004, 0.008, 0.012, 0.02]), dt=dt))
    x = (torch.rand(40, 3, 10) < 0.3).float()
    graph, y = rockpool_run(net, x)
    return graph, x, y, "rockpool", "rockpool"


CASES: dict[str, Case] = {
    "snntorch_ff": snntorch_ff, "snntorch_per_neuron": snntorch_per_neuron, "snntorch_conv": snntorch_conv,
    "snntorch_synaptic": snntorch_synaptic, "snntorch_recurrent": snntorch_recurrent,
    "norse_box": norse_box, "norse_lifcell": norse_lifcell, "norse_iaf": norse_iaf,
    "sinabs_cnn": sinabs_cnn, "rockpool_lif": rockpool_lif, "rockpool_neuron_synapse": rockpool_neuron_synapse,
}


def main() -> None:
    import nir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "nir"))
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(CASES):
        torch.manual_seed(SEED)
        graph, x, y, profile, library = CASES[name]()
        nir.write(out / f"{name}.nir", graph, compression=None)
        np.savez_compressed(out / f"{name}.npz", x=x.numpy().astype(np.float32), y=y.numpy().astype(np.float32),
                            profile=profile, library=library,
                            version=importlib.metadata.version(library))
        active = float((y != 0).float().mean())
        print(f"{name}: {type(graph).__name__} with {len(graph.nodes)} nodes, x {list(x.shape)}, y {list(y.shape)}, "
              f"{100 * active:.1f} % non-zero outputs ({library} {importlib.metadata.version(library)})")


if __name__ == "__main__":
    main()
