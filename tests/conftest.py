"""Test-wide settings: one intra-op thread per test process.

The suite runs as ``pytest -n 2`` (two worker processes on CI's two cores); one thread each
avoids OpenMP oversubscription, which slows small-tensor training loops by an order of magnitude
when more threads than cores are spinning.
"""

import torch

torch.set_num_threads(1)
