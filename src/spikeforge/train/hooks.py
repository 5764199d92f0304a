"""How method extensions (hybrid, structural development) plug into the engine.

An *extension* handles one optional recipe section. The engine calls, in order:

- ``prepare(recipe, model, splits, device, saved=None) -> list[TrainHook]`` once before training:
  it may change the model in place (replace sites, register mask buffers) and returns hooks. On
  ``--resume`` ``saved`` is the metadata its hooks wrote to ``model.json``, so a decision that
  needed data (hybrid ``auto:`` site selection) is reused instead of being computed again;
- ``restore(recipe, model, meta)`` when a run directory is loaded: rebuild the same structure
  from the metadata its hooks saved, before the weights are loaded.

A hook's methods are all optional (the engine checks with ``getattr``):

- ``after_step(model)``: after each optimizer step (e.g. re-apply projections);
- ``on_epoch_end(epoch, epochs, model) -> dict``: after each epoch (1-based); the returned
  JSON-serialisable dict is merged into that epoch's ``metrics.jsonl`` record;
- ``metadata() -> dict``: saved in ``model.json`` under the extension's section name;
- ``state_dict() / load_state_dict(d)``: JSON-serialisable state for ``--resume``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class TrainHook(Protocol):
    def on_epoch_end(self, epoch: int, epochs: int, model: nn.Module) -> dict[str, Any]: ...


class Extension(Protocol):
    section: str

    def prepare(self, recipe: Any, model: nn.Module, splits: Any, device: torch.device,
                saved: dict[str, Any] | None = None) -> list[Any]: ...

    def restore(self, recipe: Any, model: nn.Module, meta: dict[str, Any]) -> None: ...


# The extensions the engine knows: recipe section -> "module:attribute" of an Extension object,
# imported lazily so a recipe without the section never imports the method's code. Order matters:
# hybrid sites are replaced before structural development registers its masks.
EXTENSIONS: dict[str, str] = {
    "hybrid": "spikeforge.hybrid.extension:EXTENSION",
    "develop": "spikeforge.develop.extension:EXTENSION",
}
