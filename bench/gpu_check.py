"""The checks behind ``bench/gpu_check.sh``: one JSON report on stdout, within a time budget.

    python bench/gpu_check.py                       # CUDA if present, else the reduced CPU mode
    python bench/gpu_check.py --reduced --budget-s 120 --data ../shared/data/cifar10-jpeg

Steps (``STEPS``, in order), each in its own process with a timeout taken from what is left of
the budget, so a hang or a crash is reported and the next step still runs:

``triton_tests``    ``tests/test_triton.py`` (on CUDA: the kernels on the GPU; the interpreter
                    test is left to the CPU suite, it takes minutes)
``bf16_smoke``      a short training run with ``train.precision = "bf16"`` through the engine on
                    synthetic data, plus every registered neuron backend on a bf16 input against
                    the float32 reference (spikes must be equal)
``event_runtime``   the event-driven runtime on the device (torch index lists there) for every method
                    against the float64 dense executor (≤ 1e-9) and the CPU runtime's counts (equal)
``neurons``         ``bench/neurons.py`` (LIF, fwd+bwd, vs SpikingJelly / snnTorch)
``train_step``      ``bench/train_step.py`` (vs SpikingJelly / snnTorch; on CUDA SpikingJelly's
                    own choice of neuron kernel, and ``train_step_sj_torch`` its torch path)
``cifar10_resnet19`` ``spikeforge train --recipe cifar10-resnet19`` on an image-folder CIFAR-10
                    until the budget ends: epochs/min and the test accuracy after each epoch

The reduced mode (no GPU, or ``--reduced``) shrinks every step so the whole check runs in about a
minute on a CPU; the test suite runs it (tests/test_gpu_check.py). ``triton_auto_ready`` is true
only when the Triton tests passed on a GPU: the condition for listing ``triton`` in
``spikeforge.neurons.backends.AUTO_ORDER["cuda"]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_S = 480.0  # the 8 minutes on one GPU
RESERVE_S = 10.0  # kept back for writing the report
TAIL_CHARS = 1500  # output kept per failed step
MIN_STEP_S = 20.0  # a step with less time than this left is skipped, not started
SMOKE_SAMPLES = (128, 2048)  # synthetic training images of the bf16 smoke run: (CPU, CUDA)
EVENT_STEPS, EVENT_BATCH, EVENT_RATE = 4, 8, 0.2  # the event runtime check: a converted SD-SNN convnet on spikes
EVENT_TOLERANCE = 1e-9  # event runtime vs the float64 dense executor


@dataclass
class Context:
    device: str  # "cuda" | "cpu"
    reduced: bool
    budget_s: float
    data: Path
    work: Path
    python: str = sys.executable
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start) - RESERVE_S

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                   PYTHONUNBUFFERED="1")
        env.update(extra)
        return env


def run(ctx: Context, args: list[str], cap_s: float, **env: str) -> dict[str, Any]:
    """Run one command with a timeout of ``min(cap_s, what is left)``; returns rc, time, output."""
    timeout = max(1.0, min(cap_s, ctx.left()))
    start = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=REPO, env=ctx.env(**env), capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc = None
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    res: dict[str, Any] = {"rc": rc, "seconds": round(time.monotonic() - start, 1), "timeout_s": round(timeout, 1)}
    if rc is None:
        res["error"] = f"timed out after {timeout:.0f} s"
    if rc != 0:
        res["output_tail"] = out[-TAIL_CHARS:]
    res["_output"] = out
    return res


def finish(res: dict[str, Any]) -> dict[str, Any]:
    res.pop("_output", None)
    res.setdefault("ok", res["rc"] == 0)
    return res


# ------------------------------------------------------------------------------------------- steps


def triton_tests(ctx: Context) -> dict[str, Any]:
    res = run(ctx, [ctx.python, "-m", "pytest", "tests/test_triton.py", "-o", "addopts=", "-q", "-rs", "-p",
                    "no:cacheprovider", "-k", "not interpreter"], 150 if not ctx.reduced else 90)
    summary = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", res["_output"])
    res["counts"] = {kind: int(n) for n, kind in summary}
    res["passed_on_gpu"] = (ctx.device == "cuda" and res["rc"] == 0 and res["counts"].get("passed", 0) > 0
                            and not res["counts"].get("failed") and not res["counts"].get("skipped"))
    return finish(res)


def _checked(ctx: Context, flag: str, prefix: str) -> dict[str, Any]:
    """This script re-run with ``flag`` (an in-process check) in a subprocess; its ``prefix`` JSON line merged in."""
    res = run(ctx, [ctx.python, str(Path(__file__)), flag, ctx.device], 120)
    lines = [ln for ln in res["_output"].splitlines() if ln.startswith(prefix)]
    if lines:
        res.update(json.loads(lines[-1][len(prefix):]))
    res["ok"] = res["rc"] == 0 and bool(lines) and res.get("ok", False)
    return finish(res)


def bf16_smoke(ctx: Context) -> dict[str, Any]:
    return _checked(ctx, "--smoke", "SMOKE ")


def event_runtime(ctx: Context) -> dict[str, Any]:
    return _checked(ctx, "--event-smoke", "EVENT ")


def _bench(ctx: Context, script: str, args: list[str], cap_s: float, **env: str) -> dict[str, Any]:
    out = ctx.work / f"{script}-{len(list(ctx.work.iterdir()))}.json"
    res = run(ctx, [ctx.python, f"bench/{script}.py", "--json", str(out), *args], cap_s, **env)
    if out.is_file():
        res["result"] = json.loads(out.read_text())
    return finish(res)


def neurons(ctx: Context) -> dict[str, Any]:
    if ctx.reduced:
        return _bench(ctx, "neurons", ["--kinds", "LIF", "--steps", "4", "--neurons", "1024", "--repeats", "2",
                                       "--warmup", "1", "--no-compile", "--device", ctx.device, "--threads", "1"], 60)
    return _bench(ctx, "neurons", ["--kinds", "LIF", "--steps", "4", "8", "--neurons", "65536", "--repeats",
                                   "10", "--warmup", "3", "--device", ctx.device], 120)


def train_step(ctx: Context) -> dict[str, Any]:
    if ctx.reduced:
        return _bench(ctx, "train_step", ["--models", "sdsnn_convnet", "--columns", "sj", "sf-fused", "--repeats",
                                          "2", "--warmup", "1", "--device", ctx.device, "--threads", "1"], 60)
    return _bench(ctx, "train_step", ["--preset", "gpu", "--repeats", "10", "--warmup", "3"], 120)


def train_step_sj_torch(ctx: Context) -> dict[str, Any]:
    if ctx.device != "cuda":
        return {"skipped": "SpikingJelly's CUDA kernel choice exists only on CUDA"}
    return _bench(ctx, "train_step", ["--columns", "sj", "sf-fused", "--repeats", "5", "--warmup", "2"], 60,
                  SJ_LIF_CUDA_IMPLEMENTATION="torch")


def cifar10_resnet19(ctx: Context) -> dict[str, Any]:
    if not (ctx.data / "train").is_dir():
        return {"skipped": f"no image-folder CIFAR-10 at {ctx.data} (bench/README.md: carrying a subset)"}
    out = ctx.work / "cifar10-resnet19"
    common = ["--set", "train.schedule.warmup_epochs=0", "--set", "train.eval_batch_size=500", "--quiet"]
    if ctx.reduced:
        sets = ["--epochs", "1", "--set", "model.width=0.125", "--set", "data.train_limit=64", "--set",
                "data.test_limit=32", "--set", "train.batch_size=32", "--set", "data.time_steps=2"]
    else:
        sets = ["--epochs", "4", "--set", "train.precision=\"bf16\""]
    res = run(ctx, [ctx.python, "-m", "spikeforge.cli", "train", "--recipe", "cifar10-resnet19", "--data",
                    str(ctx.data), "--out", str(out), *sets, *common], ctx.left())
    records = []
    metrics = out / "metrics.jsonl"
    if metrics.is_file():
        records = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    res["epochs_done"] = len(records)
    res["test_accuracy"] = [round(r["test_accuracy"], 4) for r in records]
    res["train_samples_per_s"] = [round(r["train_samples_per_s"], 1) for r in records]
    if records:
        minutes = sum(r["epoch_time_s"] for r in records) / 60
        res["epochs_per_min"] = round(len(records) / minutes, 3)
        res["final_test_accuracy"] = records[-1]["test_accuracy"]
    res["completed"] = res["rc"] == 0
    res["ok"] = res["completed"] or (res["rc"] is None and bool(records))  # stopped by the budget: expected
    return finish(res)


STEPS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "triton_tests": triton_tests,
    "bf16_smoke": bf16_smoke,
    "event_runtime": event_runtime,  # before the CIFAR run, which takes what is left of the budget
    "neurons": neurons,
    "train_step": train_step,
    "train_step_sj_torch": train_step_sj_torch,
    "cifar10_resnet19": cifar10_resnet19,
}


# --------------------------------------------------------------------------------- smoke (subprocess)


def smoke(device_name: str) -> dict[str, Any]:
    """bf16 engine run on synthetic data + every backend on a bf16 input vs the fp32 reference."""
    import torch

    from spikeforge.data.base import ArrayDataset, DatasetInfo, DataSplits
    from spikeforge.neurons import BACKENDS, LIFNode, Sigmoid, neuron_sequence
    from spikeforge.train.engine import train
    from spikeforge.train.recipe import load_recipe

    device = torch.device(device_name)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 8, 1000, generator=gen) * 0.7 + 0.6).to(torch.bfloat16).to(device)
    p = LIFNode(tau=2.0, v_reset=0.0, surrogate=Sigmoid(4.0)).params()
    ref, _ = neuron_sequence(x.float().cpu(), p)
    backends = {}
    for name, fn in BACKENDS.items():
        if name == "compiled" and device.type == "cpu":
            continue  # tens of seconds of C++ compilation; tests/test_fused.py covers it on CPU
        xi = x.clone().requires_grad_()
        s, v = fn(xi, p, None)
        s.float().sum().backward()
        backends[name] = {"spikes_equal_fp32_reference": bool(torch.equal(s.float().cpu(), ref)),
                          "spike_dtype": str(s.dtype), "membrane_dtype": str(v.dtype),
                          "grad_finite": bool(xi.grad is not None and torch.isfinite(xi.grad).all())}
    n = SMOKE_SAMPLES[device.type == "cuda"]
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    info = DatasetInfo(name="synthetic", num_classes=10, in_channels=1, input_size=28)
    splits = DataSplits(ArrayDataset(images, labels), ArrayDataset(images[:128], labels[:128]), info)
    recipe = load_recipe("mnist-sdsnn", ["train.epochs=1", "train.batch_size=64", "train.eval_batch_size=128",
                                         "data.time_steps=4", "train.precision=\"bf16\"", "train.loss=\"ce\""])
    with tempfile.TemporaryDirectory() as tmp:
        record = train(recipe, Path(tmp) / "run", device=device_name, splits=splits, quiet=True)
    ok = all(b["spikes_equal_fp32_reference"] and b["grad_finite"] and b["membrane_dtype"] == "torch.float32"
             for b in backends.values()) and record["train_loss"] == record["train_loss"]
    return {"ok": ok, "backends": backends, "train_loss": record["train_loss"],
            "train_samples_per_s": round(record["train_samples_per_s"], 1)}


def event_smoke(device_name: str) -> dict[str, Any]:
    """SD-SNN's convnet converted; the event runtime on ``device_name`` per method vs the dense executor."""
    import torch

    from spikeforge.models.sdsnn import sdsnn_convnet
    from spikeforge.neurons import NeuronConfig
    from spikeforge.reparam import ConvertedModel, InputSpec, convert_model
    from spikeforge.runtime import EventRuntime

    torch.manual_seed(0)
    neuron = NeuronConfig(kind="if", threshold=0.5, reset="soft", backend="reference")
    graph = convert_model(sdsnn_convnet(num_classes=10, in_channels=1, input_size=28, neuron=neuron).eval(),
                          InputSpec((1, 28, 28), EVENT_STEPS))
    x = (torch.rand(EVENT_STEPS, EVENT_BATCH, 1, 28, 28, generator=torch.Generator().manual_seed(1))
         < EVENT_RATE).double()
    ref = ConvertedModel(graph)(x)

    def counts(rep: Any) -> list[tuple[int, int]]:
        return [(c.events, c.accumulations) for c in rep.layers]

    cpu = counts(EventRuntime(graph).run(x)[1])
    methods = {}
    for method in ("auto", "csr", "scatter", "dense"):
        y, rep = EventRuntime(graph, device=device_name, method=method).run(x)
        methods[method] = {"max_abs_diff": float((y.cpu() - ref).abs().max()), "counts_equal_cpu": counts(rep) == cpu,
                           "layers": {c.name: [c.method, c.events] for c in rep.layers}}
    ok = all(m["max_abs_diff"] <= EVENT_TOLERANCE and m["counts_equal_cpu"] for m in methods.values())
    return {"ok": ok, "device": device_name, "methods": methods}


# ---------------------------------------------------------------------------------------------- main


def environment(device: str) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    env: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__, "device": device,
                           "cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    for pkg in ("triton", "spikingjelly", "snntorch", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reduced", action="store_true", help="the small CPU-sized checks (default without CUDA)")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="wall-time budget of all steps")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS))
    ap.add_argument("--setup", default=None, help="JSON file with the shell wrapper's setup record")
    ap.add_argument("--smoke", default=None, help=argparse.SUPPRESS)  # internal: run the smoke test
    ap.add_argument("--event-smoke", default=None, help=argparse.SUPPRESS)  # internal: the event runtime check
    args = ap.parse_args()
    if args.smoke:
        print("SMOKE " + json.dumps(smoke(args.smoke)), flush=True)
        return 0
    if args.event_smoke:
        print("EVENT " + json.dumps(event_smoke(args.event_smoke)), flush=True)
        return 0
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict[str, Any] = {"check": "bench/gpu_check", "date": datetime.datetime.now().isoformat(timespec="seconds"),
                              "mode": "gpu" if device == "cuda" and not args.reduced else f"{device}-reduced",
                              "budget_s": args.budget_s, "environment": environment(device), "steps": {}}
    if args.setup and Path(args.setup).is_file():
        report["setup"] = json.loads(Path(args.setup).read_text())
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        ctx = Context(device, args.reduced or device != "cuda", args.budget_s, Path(args.data), Path(work))
        for name in args.steps:
            if ctx.left() < MIN_STEP_S:
                report["steps"][name] = {"skipped": f"budget spent ({ctx.left():.0f} s left)"}
                continue
            try:
                report["steps"][name] = STEPS[name](ctx)
            except Exception as err:  # noqa: BLE001 - one broken step must not lose the report
                report["steps"][name] = {"error": f"{type(err).__name__}: {err}"}
        report["elapsed_s"] = round(time.monotonic() - ctx.start, 1)
    tri = report["steps"].get("triton_tests", {})
    report["triton_auto_ready"] = bool(tri.get("passed_on_gpu"))
    report["ok"] = all(s.get("ok", False) for s in report["steps"].values() if "skipped" not in s)
    print(json.dumps(report, indent=1, sort_keys=False))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
