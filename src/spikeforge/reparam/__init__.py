"""Exact reparameterization of hybrid (SpikingReLU) models into all-spiking, neuron-only graphs.

- :mod:`.graph`: the converted format (nodes, JSON + safetensors; format 2, format 1 still read);
- :mod:`.walk`: the one model walker (shared with compaction; NIR export reads the converted graph);
- :mod:`.fold` / :mod:`.synapse`: BN and pooling folding, synaptic nodes reading binary sources;
- :mod:`.units`: levels, SEW sums and pixels as threshold units (unary / bit planes, exact ties);
- :mod:`.convert`: ``convert_model(model, spec)``;
- :mod:`.executor`: the dense float64 interpreter (``ConvertedModel``);
- :mod:`.verify` / :mod:`.certificate` / :mod:`.runs`: equality, its certificate, binary inputs and
  energy checks; run-level API.
"""

from .certificate import Certificate
from .convert import InputSpec, UnsupportedModelError, convert_model
from .executor import ConvertedModel
from .graph import ConvertedGraph, Node, load_graph, save_graph
from .runs import convert_run, verify
from .verify import Batch, BinaryInputMonitor, check_binary_inputs, pure_snn, verify_models

__all__ = ["Certificate", "InputSpec", "UnsupportedModelError", "convert_model", "ConvertedModel",
           "ConvertedGraph", "Node", "load_graph", "save_graph", "convert_run", "verify", "BinaryInputMonitor",
           "Batch", "check_binary_inputs", "pure_snn", "verify_models"]
