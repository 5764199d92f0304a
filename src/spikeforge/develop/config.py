"""Recipe section ``[develop]``: adaptive structural development (SD-SNN, Han et al. 2211.12219).

Every epoch-valued constant is given in *reference epochs* (the authors' 300-epoch runs) and is
rescaled to the run's length: with ``s = epochs / reference_epochs`` a count ``n`` becomes
``max(1, round(n·s))`` actual epochs, so one recipe serves a 20-epoch CPU run and the paper's run.
Defaults are the reference MNIST settings (see ``docs``/the module docstrings for the formulas).

Layer kinds: ``conv`` (Conv2d) and ``fc`` (Linear) take the ``conv_*`` / ``fc_*`` constants.
Rate rules are chosen by position: every pruned layer followed by another pruned layer uses the
*relative* rule (reference: the convs), the last pruned layer the *absolute* rule (reference: fc1).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DevelopConfig:
    layers: list[str] = field(default_factory=list)  # pruned layer names ([] = the model's default)
    reference_epochs: int = 300  # run length the epoch constants below refer to
    consecutive_epochs: int = 18  # C: streak length for range changes; constraint after C, pruning after 2C
    min_consecutive_epochs: int = 3  # floor for the rescaled C in short runs (C = max(floor, round(C_ref·s)));
    # C = 1 made 15-epoch MNIST runs unstable (BENCHMARKS §4); no effect from 50 epochs on
    contraction: float = 0.75  # both bounds of a synapse whose |w| shrank for C epochs are multiplied by this
    project_every_step: bool = False  # also project weights into their ranges after every optimizer step
    # neuronal pruning: initial cumulative rates in percent of a layer's neurons
    fc_initial_rate: float = 35.0  # MNIST 35, N-MNIST 45, DVS 60, CIFAR 2-3
    conv_initial_rate: float = 5.0  # MNIST family 5, CIFAR 0.5
    initial_rates: dict[str, float] = field(default_factory=dict)  # per-layer overrides (name -> percent)
    max_rate: float = 99.0  # guard: a layer never prunes more than this percentage of its neurons
    # survivors: a neuron with fewer active incoming synapses than this counts as dead (D)
    fc_min_inputs: int = 20  # reference: 20 (CIFAR script 50)
    conv_min_inputs: int = 10  # reference: 10 (CIFAR 20)
    # absolute rule (last pruned layer): dp = alpha(k)·survivors/divisor
    # alpha(k) = scale·exp(-k/tau) for k < tail_start, else tail (k: reference epochs since pruning began)
    last_rate_scale: float = 1.0  # CIFAR 0.5
    last_rate_tau: float = 1.0
    last_rate_tail_start: float = 23.0  # epoch 60 - 37 in the reference
    last_rate_tail: float = 0.00075  # CIFAR 0.0005
    last_rate_divisor: float = 10.0  # Z (DVS 11)
    # relative rule (a layer followed by a pruned layer): dp = exp(-k/tau)·survivors_l/survivors_next
    relative_rate_tau: float = 5.0
    # synaptic regeneration: percentile q(k) = min(q_max, q0 + growth^k) of the layer's weights
    fc_regen_percentile: float = 60.0  # q0 for fc (DVS 55)
    conv_regen_percentile: float = 65.0  # q0 for conv (kernel sums)
    regen_growth: float = 1.1
    regen_max_percentile: float = 99.0
    fc_regen_epochs: int = 11  # R: candidate streak that restores a synapse (reference: count > 10)
    conv_regen_epochs: int = 19  # R for conv kernels (reference: count > 18)
    # a pruned neuron that regrows synapses is revived: its layer's cumulative rate drops by one neuron's
    # share, so the same epoch's pruning does not re-mask it (false = the reference, which re-prunes it at once)
    regen_revives_neurons: bool = False
    # ablation switches (all on = full SD-SNN); constraint-only = prune false
    prune: bool = True  # neuronal pruning at the current rates (after 2C)
    regenerate: bool = True  # synaptic regeneration (needs prune)
    adaptive_rates: bool = True  # neurotrophic rate updates; false keeps every layer at its initial rate
