"""Exporters of trained spikeforge models to other formats.

NIR (Neuromorphic Intermediate Representation) is written from the converted graph
(:mod:`spikeforge.reparam`): :func:`graph_to_nir` maps its nodes onto NIR primitives, :func:`export_run`
exports a run directory or a converted directory. Needs the optional ``nir`` package
(``pip install 'spikeforge[nir]'``), imported only when an export runs.
"""

from .neuron_map import DEFAULT_DT, NirNeuron, nir_neuron
from .nir_build import ExportOptions
from .nir_graph import graph_summary, graph_to_nir, write_nir
from .runs import export_run, model_to_nir

__all__ = ["DEFAULT_DT", "NirNeuron", "nir_neuron", "ExportOptions", "graph_summary", "graph_to_nir", "write_nir",
           "export_run", "model_to_nir"]
