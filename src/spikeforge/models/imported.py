"""Model kind ``nir``: a graph imported from NIR (``spikeforge import``), rebuilt from its JSON description.

The recipe's ``model.graph`` holds the graph's structure as JSON (:class:`spikeforge.nir.GraphSpec`:
nodes, edges, shapes, hyper-parameters, uniform neuron coefficients and the discretisation it was
imported with); the weights and per-neuron parameters are the run's ``model.safetensors``. The
structure travels inside the recipe, so ``recipe.toml`` and ``model.json`` alone rebuild the model
wherever the run directory is copied (``train --resume``, ``compact`` and ``convert`` included).
``model.neuron.surrogate``/``surrogate_params``/``backend`` apply to the imported neurons; the
other neuron fields do not (the graph defines the neurons).
"""

from __future__ import annotations

from torch import nn

from ..neurons import NeuronConfig
from ..neurons.surrogate import make_surrogate

GRAPH_FIELD = "model.graph"


def nir_model(graph: str = "", num_classes: int = 0, in_channels: int = 0, input_size: int = 0,
              neuron: NeuronConfig | None = None, **_: object) -> nn.Module:
    """The imported graph ``graph`` (JSON) as a model; its input/output must fit the recipe's data."""
    from ..nir.build import build_model
    from ..nir.spec import GraphSpec

    if not graph:
        raise ValueError(f"model.name = \"nir\" needs {GRAPH_FIELD} (written by `spikeforge import`)")
    spec = GraphSpec.from_json(graph, GRAPH_FIELD)
    shape, out = spec.input_shape, spec.output_shape
    if len(shape) == 3 and in_channels and input_size and shape != [in_channels, input_size, input_size]:
        raise ValueError(f"{GRAPH_FIELD}: the graph takes input {shape}, the recipe's data gives "
                         f"[{in_channels}, {input_size}, {input_size}] (model.in_channels / model.input_size)")
    if num_classes and out and out[-1] != num_classes:
        raise ValueError(f"{GRAPH_FIELD}: the graph has {out[-1]} outputs, the recipe's data {num_classes} classes")
    neuron = neuron or NeuronConfig()
    surrogate = make_surrogate(neuron.surrogate, **neuron.surrogate_params)
    return build_model(spec, surrogate, neuron.backend)
