"""Exact reparameterization of hybrid (SpikingReLU) models into all-spiking, event-driven graphs.

- :mod:`.graph`: the converted format (nodes, JSON + safetensors);
- :mod:`.fold` / :mod:`.planes` / :mod:`.synapse`: BN and pooling folding, binary planes;
- :mod:`.convert`: ``convert_model(model, spec)`` walks the model zoo's structure;
- :mod:`.executor`: the dense float64 interpreter (``ConvertedModel``);
- :mod:`.verify` / :mod:`.runs`: equality, binary-input and energy checks; run-level API.
"""

from .convert import InputSpec, UnsupportedModelError, convert_model
from .executor import ConvertedModel
from .graph import ConvertedGraph, Node, load_graph, save_graph
from .runs import convert_run, verify
from .verify import Batch, BinaryInputMonitor, check_binary_inputs, pure_snn, verify_models

__all__ = ["InputSpec", "UnsupportedModelError", "convert_model", "ConvertedModel", "ConvertedGraph", "Node",
           "load_graph", "save_graph", "convert_run", "verify", "BinaryInputMonitor", "Batch",
           "check_binary_inputs", "pure_snn", "verify_models"]
