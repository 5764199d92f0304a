"""SD-SNN adaptive structural development (Han, Zhao, Zeng, Pan, arXiv 2211.12219), with the engine or
in your own loop.

- :mod:`.config`: the recipe section ``[develop]``;
- :mod:`.development`: ``Development(model, cfg, epochs, layers)`` — ``after_step()`` after every
  optimizer step, ``end_epoch(epoch)`` once per epoch; :mod:`.extension`: the training method (``METHOD``);
- :mod:`.rules`: the ordered rules (constraint, regeneration, optional revival, pruning, neurotrophic
  rates), each declaring its buffers and metrics; their mechanisms in :mod:`.constraint`,
  :mod:`.regeneration`, :mod:`.pruning`, :mod:`.rates`, :mod:`.schedule`;
- :mod:`.masking`: masked layers with trained shadow weights, ``bake_masks``;
- :mod:`.chain` / :mod:`.compact` / :mod:`.compacted`: removing pruned neurons (``compact_run`` for a run
  directory, ``compact_model`` in memory); :mod:`.plot`: ``development.png``.
"""

from .compact import compact_run, compact_state
from .compacted import compact_model
from .config import DevelopConfig
from .development import Development, default_layers, equip, overall_pruning_rate
from .extension import METHOD, DevelopHook, DevelopMethod
from .masking import bake_masks, is_masked
from .rules import ALL_RULES, Rule, rules_for

__all__ = [
    "ALL_RULES", "METHOD", "DevelopConfig", "DevelopHook", "DevelopMethod", "Development", "Rule", "bake_masks",
    "compact_model", "compact_run", "compact_state", "default_layers", "equip", "is_masked", "overall_pruning_rate",
    "rules_for",
]
