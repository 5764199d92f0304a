"""SD-SNN adaptive structural development (Han, Zhao, Zeng, Pan, arXiv 2211.12219).

- :mod:`.config`: the recipe section ``[develop]``;
- :mod:`.masking`: masked layers with trained shadow weights (``layer.weight_mask`` buffers);
- :mod:`.constraint`: dendritic-spine synaptic ranges; :mod:`.pruning`: neuronal pruning;
  :mod:`.regeneration`: synaptic regeneration; :mod:`.rates`: neurotrophic rates;
  :mod:`.schedule`: epoch constants scaled to the run length;
- :mod:`.extension`: the engine extension (``EXTENSION``) and its per-epoch hook;
- :mod:`.chain` / :mod:`.compact`: removing pruned neurons (``spikeforge compact``);
- :mod:`.plot`: ``plot_development(run_dir)``.

Submodules are imported explicitly (this package is imported by the recipe schema, so it stays light).
"""
