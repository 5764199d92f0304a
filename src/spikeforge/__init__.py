"""spikeforge: spiking neural networks with hybrid training, exact reparameterization and
adaptive structural development.

Tensors are time-first: ``[T, B, ...]``.
"""

__version__ = "0.1.0"
