"""Recipe sections ``[train]``, ``[train.optimizer]`` and ``[train.schedule]``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

PRECISIONS = ("auto", "bf16", "fp32")  # "auto": bf16 autocast on CUDA, fp32 on CPU
AMP_TO_PRECISION = {"auto": "auto", "bf16": "bf16", "off": "fp32"}  # the deprecated train.amp values


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # "sgd" | "adam" | "adamw"
    lr: float = 0.1
    momentum: float = 0.9  # SGD
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam / AdamW


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # "cosine" | "step" | "constant"
    warmup_epochs: int = 0  # linear warm-up from lr·warmup_start_factor
    warmup_start_factor: float = 0.1
    step_size: int = 30  # "step": multiply lr by gamma every step_size epochs
    gamma: float = 0.1
    min_lr: float = 0.0  # "cosine": floor


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 256
    loss: str = "ce"  # "ce": cross-entropy on time-averaged output | "mse_rate": MSE of rates vs one-hot (SD-SNN)
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "bf16" (autocast, CPU and CUDA) | "fp32"
    amp: str = "auto"  # deprecated alias of precision ("off" = "fp32"); kept so old recipes and runs load
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    keep_checkpoints: int = 2  # the last K epochs' checkpoints are kept (and always the best one)
    skip_nonfinite_steps: int = 0  # steps with a NaN/inf loss or gradient skipped before training stops
    threads: int | str = "default"  # CPU intra-op threads: "default" (torch: one per core) | "auto" (the cores
    # free when training starts, spikeforge.threads.auto_threads) | N
    compile: bool = False  # torch.compile the model for training steps (whole forward + backward; eval stays eager)

    def __post_init__(self) -> None:
        """Resolve the deprecated ``amp`` into ``precision`` and keep the two consistent."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.amp not in AMP_TO_PRECISION:
            raise ValueError(f"train.amp (deprecated: use train.precision) must be one of "
                             f"{tuple(AMP_TO_PRECISION)}, got {self.amp!r}")
        legacy = AMP_TO_PRECISION[self.amp]
        if legacy != "auto":
            if self.precision not in ("auto", legacy):
                raise ValueError(f"train.amp = {self.amp!r} contradicts train.precision = {self.precision!r}; "
                                 "set only train.precision")
            if self.precision == "auto":
                warnings.warn("train.amp is deprecated: use train.precision = \"bf16\" | \"fp32\"",
                              DeprecationWarning, stacklevel=3)
            self.precision = legacy
        self.amp = {v: k for k, v in AMP_TO_PRECISION.items()}[self.precision]
