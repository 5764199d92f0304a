"""The ``compiled`` backend: the ``fused`` backend's functional loops compiled by ``torch.compile``.

Same autograd node, same saved tensors and the same formulas as ``fused``
(:mod:`~spikeforge.neurons.fused`); inductor turns each loop over T into one fused kernel, the
fastest CPU path measured (``bench/neurons.py``). It is chosen by name (``backend =
"compiled"``) and never switched on or off behind the user's back:

- compiling costs seconds per new call signature (neuron spec, T, dtype, device, flags — not the
  number of neurons: the loops run on a flat ``[T, N]`` view with N marked dynamic, so one kernel
  serves every layer and batch size); the first compile in a process is reported once on stderr
  with its wall time, every compile is logged (logger ``spikeforge.neurons``, level INFO) and
  listed by :func:`compile_report`;
- if ``torch.compile`` fails (no C++ compiler, an inductor bug), the error is reported once as
  a ``RuntimeWarning`` naming the backend and the cause, recorded in :func:`compile_report`, and
  this backend then runs the eager loops (the numbers stay those of ``fused``).

Inside an outer ``torch.compile(model)`` the functional loops are traced into the model's graph.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .functional import NeuronParams
from .fused import Loops, backward_loop, forward_loop, run_sequence
from .fused_eager import backward_eager, forward_eager

LOG = logging.getLogger("spikeforge.neurons")
MAX_REPORTED_SIGNATURES = 1024  # compile events kept in the report (a long run may see many shapes)
RETIRED_ENV = "SPIKEFORGE_FUSED_COMPILE"  # read by versions that compiled after 200 calls; no longer read

if os.environ.get(RETIRED_ENV):
    warnings.warn(f"{RETIRED_ENV} is no longer read: choose the neuron backend by name instead "
                  "(model.neuron.backend = \"compiled\" for torch.compile-d loops, \"fused\" for eager ones)",
                  FutureWarning, stacklevel=2)


@dataclass
class CompileReport:
    """What the ``compiled`` backend has done in this process."""

    compiles: list[tuple[str, float]] = field(default_factory=list)  # (loop and signature, seconds)
    failure: str | None = None  # the first compile error; set once the backend fell back to eager

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.compiles)

    def as_dict(self) -> dict[str, Any]:
        return {"compiles": len(self.compiles), "compile_seconds": round(self.seconds, 3),
                "failure": self.failure}


class CompiledLoops(Loops):
    """Loops compiled with ``torch.compile``; first call of a signature = compile (timed)."""

    name = "compiled"

    def __init__(self) -> None:
        self.report = CompileReport()
        self._fns: dict[str, Callable[..., Any]] = {}
        self._seen: set[tuple[object, ...]] = set()

    def reset(self) -> None:
        """Forget compiled functions and the report (tests; a new process starts empty anyway)."""
        self.report = CompileReport()
        self._fns.clear()
        self._seen.clear()

    def forward(self, key: tuple[object, ...], *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._call("forward", key, forward_eager, forward_loop, args)  # type: ignore[no-any-return]

    def backward(self, key: tuple[object, ...], *args: Any) -> tuple[torch.Tensor | None, ...]:
        return self._call("backward", key, backward_eager, backward_loop, args)  # type: ignore[no-any-return]

    def _call(self, loop: str, key: tuple[object, ...], eager_fn: Callable[..., Any], pure_fn: Callable[..., Any],
              args: tuple[Any, ...]) -> Any:
        if torch.compiler.is_compiling():
            return pure_fn(*args)  # traced into an outer torch.compile
        if self.report.failure is not None:
            return eager_fn(*args)
        sig = (loop, *key)
        first = sig not in self._seen
        start = time.perf_counter()
        try:
            fn = self._fns.get(loop)
            if fn is None:
                fn = self._fns[loop] = torch.compile(pure_fn)
            for t in args:  # the loops see [T, N] / [N]: N may change, nothing else needs to recompile
                if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[-1] > 1:
                    torch._dynamo.mark_dynamic(t, t.dim() - 1)
            out = fn(*args)
        except Exception as err:  # noqa: BLE001 - reported below, then the eager loops run
            self._fail(err)
            return eager_fn(*args)
        if first:
            self._seen.add(sig)
            self._record(loop, key, time.perf_counter() - start)
        return out

    def _record(self, loop: str, key: tuple[object, ...], seconds: float) -> None:
        what = f"{loop} loop, T = {key[1]}, {key[2]}, {key[3]}"
        if not self.report.compiles:
            print(f"spikeforge: backend 'compiled': first torch.compile of the neuron loops ({what}) took "
                  f"{seconds:.1f} s; another neuron, T or dtype compiles once more "
                  "(spikeforge.neurons.compile_report())",
                  file=sys.stderr, flush=True)
        if len(self.report.compiles) < MAX_REPORTED_SIGNATURES:
            self.report.compiles.append((what, seconds))
        LOG.info("compiled neuron %s in %.2f s", what, seconds)

    def _fail(self, err: Exception) -> None:
        self.report.failure = f"{type(err).__name__}: {err}"
        warnings.warn(f"spikeforge backend 'compiled': torch.compile failed ({self.report.failure}); running "
                      "the eager loops of backend 'fused' from now on", RuntimeWarning, stacklevel=5)


COMPILED = CompiledLoops()


def compiled_sequence(x_seq: torch.Tensor, p: NeuronParams,
                      v0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Backend ``compiled``: the fused autograd node with ``torch.compile``-d loops."""
    return run_sequence(x_seq, p, v0, COMPILED)


def compile_report() -> dict[str, Any]:
    """Compiles done by the ``compiled`` backend in this process: count, seconds, failure."""
    return COMPILED.report.as_dict()
