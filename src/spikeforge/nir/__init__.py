"""NIR import: graphs written by spikeforge or other libraries (snnTorch, Norse, Sinabs, Rockpool) as models.

- :func:`load` — a NIR file or ``nir.NIRGraph`` → ``nn.Module`` (``[T, B, *in] -> [T, B, *out]``);
- :class:`Semantics` / :data:`PROFILES` — how the continuous-time graph is discretised (``dt``,
  Euler or exact decay, threshold comparison, reset), per producing library;
- :class:`GraphSpec` — the graph's structure as JSON (a run directory's ``model.graph``);
- :func:`import_run` (``spikeforge import``) — a NIR file → a run directory.

See ``docs/export.md``, section "Import". Reading files needs the optional ``nir`` package.
"""

from .build import build_model, read_spec
from .load import load, read_graph, spec_and_tensors
from .semantics import PROFILES, Semantics, resolve
from .spec import GraphSpec, NodeSpec

__all__ = ["load", "read_graph", "spec_and_tensors", "build_model", "read_spec", "PROFILES", "Semantics",
           "resolve", "GraphSpec", "NodeSpec"]
