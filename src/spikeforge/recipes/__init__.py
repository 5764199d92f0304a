"""Packaged recipes (TOML data files); list them with ``spikeforge recipes``."""
