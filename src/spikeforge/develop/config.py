"""Recipe section ``[develop]``: adaptive structural development (SD-SNN)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DevelopConfig:
    layers: list[str] = field(default_factory=list)  # prunable synaptic layer names ([] = model default)
