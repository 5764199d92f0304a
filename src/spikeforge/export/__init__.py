"""Exporters of trained spikeforge models to other formats.

:mod:`.nir_graph` writes NIR graphs (Neuromorphic Intermediate Representation); it needs the optional
``nir`` package (``pip install 'spikeforge[nir]'``), imported only when an export runs.
"""

from .neuron_map import DEFAULT_DT, NirNeuron, nir_neuron
from .nir_graph import export_run, graph_summary, model_to_nir, write_nir

__all__ = ["DEFAULT_DT", "NirNeuron", "nir_neuron", "export_run", "graph_summary", "model_to_nir", "write_nir"]
