"""A compacted copy of a developed model in memory (the in-loop counterpart of ``spikeforge compact``)."""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from ..train.checkpoint import load_state_into
from .chain import resize
from .compact import DEV_BUFFERS, compact_state
from .masking import strip_masks

IN_MEMORY = Path("<compacted model>")  # names the state in a load error


def compact_model(model: nn.Module) -> tuple[nn.Module, dict[str, int]]:
    """A smaller plain copy of a developed chain model without its dead neurons, and the kept widths.

    Its outputs equal the masked model's (dead neurons never fire; :mod:`.compact`). ``model`` is unchanged.
    """
    widths, state = compact_state(model)
    small = strip_masks(copy.deepcopy(model), DEV_BUFFERS)
    resize(small, widths)
    load_state_into(small, state, IN_MEMORY)
    return small, widths
